"""``StructuredAdapter``: DSPy's JSONAdapter, with a bounded JSON schema sent on every request.

vLLM enforces ``response_format={"type": "json_schema", ...}`` with guided decoding, so even a 135M
model always emits the signature's output fields. DSPy's JSONAdapter only sends a schema to models
LiteLLM knows support one, which excludes ``openai/<local model>``; this adapter sends it always.
Free-text fields get a ``maxLength`` (``max_chars=`` on the OutputField, else
``DEFAULT_REASONING_MAX_CHARS``) so that a rambling model still closes the JSON before max_tokens.

With ``n > 1`` a choice whose fields do not parse is dropped and counted in the call's usage; only
when no choice parses does the call raise ``ParseError`` (with the raw text).

Not guaranteed: the schema bounds characters, not tokens, so max_tokens must leave room for the
bound (about 4 characters per token for English); fields of type ``dict`` cannot be constrained
and go out as ``json_object``.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.adapters.json_adapter import _get_structured_outputs_response_format, _has_open_ended_mapping
from dspy.utils.exceptions import AdapterParseError

from reasonflow.config import DEFAULT_REASONING_MAX_CHARS
from reasonflow.errors import ParseError
from reasonflow.usage import record_parse_failures


def bounded_schema(signature: type[dspy.Signature]) -> dict:
    """The JSON schema of the signature's output fields, with every string bounded."""
    schema = _get_structured_outputs_response_format(signature).model_json_schema()
    for name, prop in schema.get("properties", {}).items():
        extra = signature.output_fields[name].json_schema_extra or {}
        _bound_strings(prop, extra.get("max_chars", DEFAULT_REASONING_MAX_CHARS))
    return schema


def _bound_strings(prop: dict, max_chars: int) -> None:
    if prop.get("type") == "string" and "maxLength" not in prop and "enum" not in prop:
        prop["maxLength"] = max_chars
    for sub in prop.get("anyOf", []) + ([prop["items"]] if isinstance(prop.get("items"), dict) else []):
        _bound_strings(sub, max_chars)


def response_format(signature: type[dspy.Signature]) -> dict:
    if _has_open_ended_mapping(signature):
        return {"type": "json_object"}
    return {"type": "json_schema",
            "json_schema": {"name": signature.__name__ or "outputs", "schema": bounded_schema(signature), "strict": True}}


class StructuredAdapter(dspy.JSONAdapter):
    """JSONAdapter that always attaches a bounded ``json_schema`` response format."""

    def _prepare_response_format(self, lm, lm_kwargs: dict, signature) -> None:
        lm_kwargs.setdefault("response_format", response_format(signature))

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
