"""``StructuredAdapter``: DSPy's JSONAdapter, with a bounded JSON schema sent on every request.

vLLM enforces ``response_format={"type": "json_schema", ...}`` with guided decoding, so even a 135M
model always emits the signature's output fields. DSPy's JSONAdapter only sends a schema to models
LiteLLM knows support one, which excludes ``openai/<local model>``; this adapter sends it always.
The schema is DSPy's own (what ``JSONAdapter`` builds for an LM that supports JSON schemas), bounded:
free-text fields get a ``maxLength`` (``max_chars=`` on the OutputField, else
``DEFAULT_REASONING_MAX_CHARS``), numbers become short numeric strings, and when the request's
max_tokens is below what the bounded JSON may take in the worst case (one token per character), it
is raised to that, so a rambling model still closes the JSON: truncation cannot happen.

With ``n > 1`` a choice whose fields do not parse is dropped and counted in the call's usage; only
when no choice parses does the call raise ``ParseError`` (with the raw text).

A response format passed in the call's config (a tree search's per-state action space) is kept as
it is, and max_tokens is still raised to its worst case.

``CompactAdapter`` is the short prompt fine-tuned models are trained on and called with: the
signature's instructions as the system message, one ``name: value`` line per input, compact JSON
out, the same bounded schema enforced (about 70 prompt tokens a call, against about 300). The
``StructuredAdapter`` switches to it by itself for an LM whose ``prompt_format`` is ``"compact"``,
which ``reasonflow.connect`` sets from the served model's manifest (``prompt_format_of``).

Not guaranteed: fields of type ``dict``, nested objects and arrays without ``maxItems`` cannot be
bounded (``dict`` goes out as ``json_object``), so those requests keep the caller's max_tokens.
"""

from __future__ import annotations

import copy
import json
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from reasonflow.config import DEFAULT_REASONING_MAX_CHARS
from reasonflow.errors import ParseError
from reasonflow.usage import record_parse_failures


# JSON numbers have no length bound in a grammar, and a small model can emit 1.6666666... until
# max_tokens. Numbers are therefore asked for as short numeric strings (DSPy parses them back).
NUMBER_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$"
INTEGER_PATTERN = r"^-?[0-9]{1,15}$"
NUMBER_MAX_CHARS = 25  # what the patterns allow: sign, 15 digits, point, 8 digits
JSON_OVERHEAD_TOKENS = 8  # braces, quotes, key names: per field, on top of the field's own bound


# What DSPy's JSONAdapter reads off an LM to decide on a response format: an LM that takes
# ``response_format`` and supports JSON schemas (``VLLMLM`` declares both). Asking JSONAdapter with this
# view gives DSPy's own structured-outputs schema for any LM, or its ``json_object`` fallback (a ``dict``
# field, a schema pydantic cannot build), without reasonflow rebuilding either.
_SCHEMA_CAPABLE = SimpleNamespace(supported_params=frozenset({"response_format"}), supports_response_schema=True)


def dspy_response_format(signature: type[dspy.Signature]) -> dict | type:
    """DSPy's own choice of response format for ``signature``: a pydantic model of the output fields
    (strict: every property required, no extras), or ``{"type": "json_object"}``."""
    kwargs: dict = {}
    dspy.JSONAdapter()._prepare_response_format(_SCHEMA_CAPABLE, kwargs, signature)
    return kwargs["response_format"]


def bounded_schema(signature: type[dspy.Signature]) -> dict:
    """The JSON schema of the signature's output fields, with every string and number bounded."""
    fmt = dspy_response_format(signature)
    if isinstance(fmt, dict):
        raise TypeError(f"{signature.__name__} has output fields no JSON schema can describe: "
                        f"{list(signature.output_fields)}")
    schema = copy.deepcopy(fmt.model_json_schema())
    for name, prop in schema.get("properties", {}).items():
        extra = signature.output_fields[name].json_schema_extra or {}
        _bound(prop, extra.get("max_chars", DEFAULT_REASONING_MAX_CHARS))
    return schema


def _bound(prop: dict, max_chars: int) -> None:
    kind = prop.get("type")
    if kind in ("number", "integer"):
        prop.clear()
        # (xgrammar refuses maxLength next to pattern; the pattern itself bounds the length)
        prop.update(type="string", pattern=NUMBER_PATTERN if kind == "number" else INTEGER_PATTERN)
    elif kind == "string" and "maxLength" not in prop and "enum" not in prop:
        prop["maxLength"] = max_chars
    for sub in prop.get("anyOf", []) + ([prop["items"]] if isinstance(prop.get("items"), dict) else []):
        _bound(sub, max_chars)


def worst_case_tokens(schema: dict) -> int | None:
    """Tokens that always suffice to close the JSON (one token per character at worst), or None when
    some field is unbounded (an array without maxItems, a nested object)."""
    total = JSON_OVERHEAD_TOKENS
    for prop in schema.get("properties", {}).values():
        if "enum" in prop:
            size = max(len(str(v)) for v in prop["enum"])
        elif prop.get("type") == "boolean":
            size = 5
        elif "maxLength" in prop:
            size = prop["maxLength"]
        elif prop.get("pattern") in (NUMBER_PATTERN, INTEGER_PATTERN):
            size = NUMBER_MAX_CHARS
        else:
            return None
        total += size + JSON_OVERHEAD_TOKENS
    return total


# Per signature class (weakly: a class built on the fly does not stay alive for its cache entry).
# Both depend only on the class; building them again for every call was a large share of its CPU.
_response_formats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_system_messages: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def response_format(signature: type[dspy.Signature]) -> dict:
    """The request's response format for the signature, cached per class: shared, do not mutate."""
    fmt = _response_formats.get(signature)
    if fmt is None:
        fmt = _response_formats[signature] = _build_response_format(signature)
    return fmt


def _build_response_format(signature: type[dspy.Signature]) -> dict:
    if isinstance(dspy_response_format(signature), dict):  # DSPy's fallback for a dict field: json_object
        return {"type": "json_object"}
    return {"type": "json_schema",
            "json_schema": {"name": signature.__name__ or "outputs", "schema": bounded_schema(signature), "strict": True}}


class StructuredAdapter(dspy.JSONAdapter):
    """JSONAdapter that always attaches a bounded ``json_schema`` response format."""

    def _delegate(self, lm):
        """The adapter to use for ``lm``: compact for a model trained on compact prompts."""
        if type(self) is StructuredAdapter and getattr(lm, "prompt_format", "json") == "compact":
            return CompactAdapter(callbacks=self.callbacks)
        return None

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        other = self._delegate(lm)
        if other is not None:
            return other(lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        other = self._delegate(lm)
        if other is not None:
            return await other.acall(lm, lm_kwargs, signature, demos, inputs)
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def _prepare_response_format(self, lm, lm_kwargs: dict, signature) -> None:
        # a per-call format (a tree search's action space) is kept; else the signature's bounded one
        fmt = lm_kwargs["response_format"] = lm_kwargs.get("response_format") or response_format(signature)
        needed = worst_case_tokens(fmt["json_schema"]["schema"]) if fmt["type"] == "json_schema" else None
        current = lm_kwargs.get("max_tokens") or lm.kwargs.get("max_tokens")
        if needed and current and current < needed:
            lm_kwargs["max_tokens"] = needed  # so the bounded JSON can always close

    def format_system_message(self, signature) -> str:
        """JSONAdapter's system message, cached per signature class."""
        key = (type(self), self.use_native_function_calling)
        per_adapter = _system_messages.setdefault(signature, {})
        if key not in per_adapter:
            per_adapter[key] = super().format_system_message(signature)
        return per_adapter[key]

    def _call_postprocess(self, processed_signature, original_signature, outputs: list, lm, lm_kwargs) -> list[dict]:
        values, errors = [], []
        for output in outputs:
            try:
                values.extend(super()._call_postprocess(processed_signature, original_signature, [output], lm, lm_kwargs))
            except AdapterParseError as exc:
                errors.append(exc)
        if errors:
            record_parse_failures(len(errors))
        if not values:
            raw = errors[0].lm_response if errors else ""
            raise ParseError(f"none of {len(outputs)} completion(s) had the fields "
                             f"{list(original_signature.output_fields)}", raw_text=str(raw or ""))
        return values

    def format_finetune_data(self, signature, demos: list[dict[str, Any]], inputs: dict[str, Any],
                             outputs: dict[str, Any]) -> dict[str, list[Any]]:
        """Render one SFT example exactly as inference will prompt for it (system, user, assistant)."""
        messages = self.format(signature, demos, inputs)
        messages.append({"role": "assistant",
                         "content": self.format_assistant_message_content(signature, outputs)})
        return {"messages": messages}


class CompactAdapter(StructuredAdapter):
    """The short prompt format: instructions as the system message, ``name: value`` input lines and
    compact JSON out, with the same bounded schema as ``StructuredAdapter``."""

    def format_system_message(self, signature) -> str:
        return signature.instructions

    def format_user_message_content(self, signature, inputs, prefix: str = "", suffix: str = "",
                                    main_request: bool = False) -> str:
        lines = [f"{name}: {inputs[name]}" for name in signature.input_fields if name in inputs]
        return "\n".join(part for part in (prefix, *lines, suffix) if part)

    def format_assistant_message_content(self, signature, outputs, missing_field_message=None) -> str:
        return json.dumps({name: outputs.get(name, missing_field_message) for name in signature.output_fields},
                          ensure_ascii=False, separators=(",", ":"), default=str)


PROMPT_FORMATS = ("json", "compact")
MANIFESTS = ("reasonflow-adapter.json", "reasonflow-merged.json")  # an adapter's, a merged model's


def prompt_format_of(model_dir: str | Path) -> str:
    """The prompt format a model directory was trained on (its reasonflow manifest), else "json"."""
    for name in MANIFESTS:
        path = Path(model_dir) / name
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        manifest = manifest.get("adapter_manifest", manifest) if isinstance(manifest, dict) else {}
        fmt = manifest.get("prompt_format", "json") if isinstance(manifest, dict) else "json"
        return fmt if fmt in PROMPT_FORMATS else "json"
    return "json"
