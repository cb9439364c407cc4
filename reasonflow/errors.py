"""One exception tree for everything reasonflow raises on purpose.

Catch ``ReasonflowError`` to handle them all. Each error's message says what to do next. Errors that
wrap a dependency's failure keep the original as ``__cause__``. Nothing here is raised for programmer
mistakes inside reasonflow itself (those stay ordinary ``TypeError``/``AssertionError``).

    ReasonflowError
    ├── ConfigError            a setting or argument is invalid (also a ValueError)
    ├── EngineError            the embedded vLLM engine
    │   ├── ModelFetchError    fetching, verifying or converting the model failed
    │   ├── EngineStartError   the server died or was not ready in time (carries the log tail)
    │   └── EngineNotRunning   no engine is up where one was expected
    ├── LMError                a call to the OpenAI-compatible endpoint
    │   ├── LMTimeoutError     the server stalled, reset or kept answering 429/5xx past the retry bound
    │   ├── LMRequestError     a 4xx answer that retrying cannot fix (400, 401, 404, ...)
    │   │   └── ContextOverflowError  prompt + max_tokens exceed the model's context length
    │   ├── UpstreamResponseError  a 200 whose body is cut off, not a completion, or has no choices
    │   ├── TruncatedError     the completion stopped at max_tokens (finish_reason="length")
    │   └── ParseError         the completion had no parseable output fields (carries the raw text)
    ├── NoAnswerError          a program ran but found no usable answer (every sample unusable, ...)
    ├── DatasetError           a dataset name, split or local file is missing or malformed
    ├── ArtifactError          a compiled program or trace file is invalid (or a pickle)
    └── SandboxError           generated code failed in the sandbox (subclasses in reasonflow.sandbox:
                               SandboxTimeout, SandboxMemoryError, SandboxForbidden, SandboxCodeError,
                               SandboxNoAnswer, SandboxCrashError, SandboxUnavailable)
"""

from __future__ import annotations


class ReasonflowError(Exception):
    """Base of every error reasonflow raises on purpose."""


class ConfigError(ReasonflowError, ValueError):
    """A setting or argument is invalid; the message names it and the allowed values."""


class EngineError(ReasonflowError):
    """Something is wrong with the embedded vLLM engine."""


class ModelFetchError(EngineError):
    """The model could not be downloaded, verified or converted."""


class EngineStartError(EngineError):
    """The engine process died, or did not become ready within the wait. ``log_tail`` quotes its log."""

    def __init__(self, message: str, log_tail: str = "", log_path: str | None = None):
        self.log_tail = log_tail
        self.log_path = log_path
        detail = f"\n--- last lines of {log_path or 'the engine log'} ---\n{log_tail}" if log_tail else ""
        super().__init__(message + detail)


class EngineNotRunning(EngineError):
    """No engine is running where one was expected. Start one with `reasonflow engine up`."""


class LMError(ReasonflowError):
    """A call to the OpenAI-compatible endpoint failed."""


class LMTimeoutError(LMError):
    """The endpoint stalled, reset the connection or kept answering 429/5xx past the retry bound."""


class LMRequestError(LMError):
    """The endpoint rejected the request (a 4xx that retrying cannot fix)."""

    def __init__(self, message: str, status_code: int | None = None):
        self.status_code = status_code
        super().__init__(message)


class ContextOverflowError(LMRequestError):
    """The prompt plus max_tokens exceed the model's context length. Shorten the prompt or max_tokens."""


class UpstreamResponseError(LMError):
    """The endpoint answered 200 with a body that is cut off, not a chat completion, or has no choices."""


class TruncatedError(LMError):
    """The completion hit max_tokens (finish_reason="length"); its answer is never scored."""

    def __init__(self, message: str, raw_text: str = ""):
        self.raw_text = raw_text
        super().__init__(message)


class ParseError(LMError):
    """The completion did not contain the signature's output fields. ``raw_text`` is what the LM said."""

    def __init__(self, message: str, raw_text: str = ""):
        self.raw_text = raw_text
        super().__init__(f"{message}; raw text: {raw_text[:300]!r}")


class NoAnswerError(ReasonflowError):
    """A program ran to the end but had no usable answer: every sample was missing, blank or a
    non-finite number, or every program failed. A strategy reports it in ``Result.error``; it is not raised."""


class DatasetError(ReasonflowError):
    """A dataset name, split or local file is missing or malformed."""


class ArtifactError(ReasonflowError):
    """A compiled program or trace file is invalid, from an unknown version, or a pickle."""


class SandboxError(ReasonflowError):
    """Generated code failed inside the sandbox (timeout, memory, forbidden import, exception)."""


def describe(error: BaseException) -> str:
    """``"ParseError: ..."``: an error's class and message, in one bounded line for traces and rows."""
    return f"{type(error).__name__}: {error}"[:500]


def cli_main(command, *args) -> int:
    """Run a CLI command: its exit status; a ``ReasonflowError`` prints as one line (``error: ...``,
    exit 2), never a traceback, and Ctrl-C exits 130."""
    import sys

    try:
        return command(*args)
    except ReasonflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
