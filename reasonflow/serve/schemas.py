"""Request bodies of the HTTP API as pydantic models; the program options come from the strategies.

``SolveRequest`` is the body of ``POST /v1/solve`` and ``/v1/solve/stream``; ``ChatRequest`` the body of
``POST /v1/chat/completions`` and ``CompletionRequest`` of ``POST /v1/completions`` (unknown OpenAI fields
are ignored, as OpenAI-compatible servers do).
Every number is bounded and every choice is a ``Literal``, so a bad ``k``, ``n`` or ``max_tokens`` is a
422 before any LM call. ``SolveOptions`` is derived from the strategies' ``Options`` dataclasses (their
types, choices, ranges and request ``Limit``s), so a strategy declares an option once. ``check_options`` adds what a model alone cannot know: which options the
program's strategy takes (a ToT ``breadth`` sent to a CoT program is a 422, not silently ignored).

Not guaranteed: a valid request can still fail later (engine down: 504; a prompt over the model's
context: 422 from the engine's answer), and bounds here do not bound a request's total cost beyond
what ``budget`` allows.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

import reasonflow.strategies  # noqa: F401  (registers the built-in strategies)
from reasonflow.errors import ConfigError
from reasonflow.registry import STRATEGIES
from reasonflow.serve.config import (
    DEFAULT_SERVE_MAX_CHOICES, DEFAULT_SERVE_MAX_DEADLINE_S, DEFAULT_SERVE_MAX_DEPTH,
    DEFAULT_SERVE_MAX_LM_CALLS, DEFAULT_SERVE_MAX_MESSAGES, DEFAULT_SERVE_MAX_NODES, DEFAULT_SERVE_MAX_QUESTION_CHARS,
    DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S, DEFAULT_SERVE_MAX_TOKENS,
)

Temperature = Field(default=None, ge=0.0, le=2.0)
MaxTokens = Field(default=None, ge=1, le=DEFAULT_SERVE_MAX_TOKENS)

# max_tokens goes to the LM and deadline_s to the server's clock, not to the program
COMMON_OPTIONS = frozenset({"budget", "max_tokens", "deadline_s"})


class BudgetOptions(BaseModel):
    """Bounds on one search (``reasonflow.config.Budget``); unset fields keep the library defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_nodes: Optional[int] = Field(default=None, ge=1, le=DEFAULT_SERVE_MAX_NODES)
    max_depth: Optional[int] = Field(default=None, ge=1, le=DEFAULT_SERVE_MAX_DEPTH)
    max_lm_calls: Optional[int] = Field(default=None, ge=1, le=DEFAULT_SERVE_MAX_LM_CALLS)
    deadline_s: Optional[float] = Field(default=None, gt=0.0, le=DEFAULT_SERVE_MAX_DEADLINE_S)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_tokens: Optional[int] = MaxTokens
    budget: Optional[BudgetOptions] = None
    # The whole request's wall clock (default: the server's request_deadline_s); past it, 504.
    deadline_s: Optional[float] = Field(default=None, gt=0.0, le=DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S)

    def given(self) -> dict[str, Any]:
        """The options the client set, as plain values (``budget`` as a dict of its set fields)."""
        return self.model_dump(exclude_none=True)


def strategy_fields() -> dict[str, Any]:
    """Every option a request may set for some strategy, with its type and range, read off the
    strategies' ``Options`` (``reasonflow.options``). ``ConfigError`` if two strategies give one name
    two meanings."""
    merged: dict[str, Any] = {}
    for name, cls in sorted(STRATEGIES.items()):
        for option, annotation in cls.Options.request_fields().items():
            if merged.setdefault(option, annotation) != annotation:
                raise ConfigError(f"strategy {name!r} declares option {option!r} as {annotation}, another as "
                                  f"{merged[option]}; one name must mean one thing in a request")
    return merged


# Per-request program options: the union of the strategies' own; which ones a program takes depends on
# its strategy (``check_options``).
SolveOptions = create_model("SolveOptions", __base__=_Options, __doc__="Per-request program options.",
                            **{name: (Optional[tp], None) for name, tp in strategy_fields().items()})


class SolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: Optional[str] = Field(default=None, max_length=500, description="a served program; default: the first")
    question: str = Field(min_length=1, max_length=DEFAULT_SERVE_MAX_QUESTION_CHARS)
    options: SolveOptions = Field(default_factory=SolveOptions)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(max_length=64)
    content: Optional[str | list[dict[str, Any]]] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat request. ``temperature`` and ``max_tokens`` map onto program options;
    ``options`` (send it with the openai client's ``extra_body``) sets any other program option."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=500)
    messages: list[ChatMessage] = Field(min_length=1, max_length=DEFAULT_SERVE_MAX_MESSAGES)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(default=1, ge=1, le=DEFAULT_SERVE_MAX_CHOICES)
    temperature: Optional[float] = Temperature
    max_tokens: Optional[int] = MaxTokens
    max_completion_tokens: Optional[int] = MaxTokens
    options: SolveOptions = Field(default_factory=SolveOptions)

    def solve_options(self) -> SolveOptions:
        """``options`` with the OpenAI sampling fields folded in (explicit ``options`` win)."""
        given = self.options.given()
        max_tokens = self.max_completion_tokens or self.max_tokens
        if self.temperature is not None:
            given.setdefault("temperature", self.temperature)
        if max_tokens is not None:
            given.setdefault("max_tokens", max_tokens)
        return SolveOptions.model_validate(given)


class CompletionRequest(BaseModel):
    """OpenAI's (legacy) completions request: ``prompt`` is the question (a string, or a list of one)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=500)
    prompt: str | list[str] = Field(min_length=1)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=DEFAULT_SERVE_MAX_CHOICES)
    temperature: Optional[float] = Temperature
    max_tokens: Optional[int] = MaxTokens
    options: SolveOptions = Field(default_factory=SolveOptions)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError(f"a list prompt must hold exactly one question (got {len(prompt)}); send one "
                             "request per question")
        text = prompt if isinstance(prompt, str) else prompt[0]
        if len(text) > DEFAULT_SERVE_MAX_QUESTION_CHARS:
            raise ValueError(f"prompt is over {DEFAULT_SERVE_MAX_QUESTION_CHARS} characters")
        return prompt

    def question(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def solve_options(self) -> SolveOptions:
        given = self.options.given()
        if self.temperature is not None:
            given.setdefault("temperature", self.temperature)
        if self.max_tokens is not None:
            given.setdefault("max_tokens", self.max_tokens)
        return SolveOptions.model_validate(given)


def allowed_options(strategy: str | None) -> frozenset[str]:
    """The option names a program with this strategy takes (a strategy reasonflow does not know:
    the common ones only)."""
    cls = STRATEGIES.get(strategy or "")
    return COMMON_OPTIONS | (frozenset(cls.Options.request_fields()) if cls is not None else frozenset())


def check_options(program: str, strategy: str | None, options: SolveOptions) -> list[str]:
    """Problems with ``options`` for this program, as messages (empty when it is fine)."""
    allowed = allowed_options(strategy)
    extra = sorted(set(options.given()) - allowed)
    if extra:
        return [f"program {program!r} (strategy {strategy!r}) does not take option(s) {extra}; "
                f"it takes {sorted(allowed)}"]
    return []
