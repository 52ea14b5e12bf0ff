"""How one failed attempt travels from the error boundary to the error the caller sees.

No httpx here: the stream reader (shared with ``AuditedTransport``) raises these too.
"""

from __future__ import annotations

import traceback

import pydantic

from .._exceptions import LLMError, LLMStatusError

EXCERPT = 200
"""How much of a server's text an error message quotes."""
KEY_SHOWN_AS = "[API key]"
"""What an API key that a server echoed back is replaced with in messages and records."""


class Call:
    """Which request failed, for error messages; ``scrub`` takes the API key out of any text."""

    __slots__ = ("_secret", "model", "url")

    def __init__(self, url: str, model: str, secret: str | None = None) -> None:
        self.url = url
        self.model = model
        self._secret = secret or None

    def __str__(self) -> str:
        return f"POST {self.url} (model {self.model!r})"

    def __repr__(self) -> str:
        return f"Call({self.url!r}, {self.model!r})"

    def scrub(self, text: str) -> str:
        """``text`` without the API key (servers quote it in 401 messages)."""
        return text if self._secret is None else text.replace(self._secret, KEY_SHOWN_AS)

    def cause(self, exc: BaseException | None) -> BaseException | None:
        """``exc`` to chain as the error's ``__cause__``, or None if its traceback would show the key.

        An httpx error is kept (it says what the network did); the parse error of a body that
        quotes the key is dropped, since the message already says what was wrong.
        """
        if exc is None or self._secret is None:
            return exc
        return None if self._secret in "".join(traceback.format_exception(exc)) else exc


class AttemptFailed(Exception):
    """One attempt's failure, on its way from the error boundary to the retry loop.

    It never escapes the client: the retry loop either retries, or turns it into the
    ``LLMError`` subclass named by ``error_type`` with ``to_error``.
    """

    def __init__(
        self,
        error_type: type[LLMError],
        reason: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        server_message: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.server_message = server_message
        self.retry_after = retry_after
        self.hint = hint

    def to_error(
        self, call: Call, attempt: int, max_attempts: int, *, streamed: int | None = None
    ) -> LLMError:
        """The error the caller sees: what failed, how, what the server said, how often we tried."""
        message = f"{call}: {self.reason}"
        server_message = None if self.server_message is None else call.scrub(self.server_message)
        if server_message:
            message += f"; the server said: {excerpt(server_message)!r}"
        if streamed is not None:
            message += f"; this happened mid-stream, after {streamed} character{'s' if streamed != 1 else ''} of text"
            # Even a retryable failure is not retried here: that would repeat text already delivered.
            message += ", so it was not retried" if self.retryable else "; not retried"
            message += f" (attempt {attempt} of {max_attempts})"
        elif self.retryable:
            message += f"; gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
        else:
            message += f"; not retried (attempt {attempt} of {max_attempts})"
        message += "." if self.hint is None else f". {self.hint}"
        message = call.scrub(message)
        if self.error_type is LLMStatusError:
            assert self.status_code is not None
            return LLMStatusError(message, status_code=self.status_code, server_message=server_message)
        return self.error_type(message)


def excerpt(text: str) -> str:
    """The start of a server's text, for a message."""
    text = text.strip()
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def explain(exc: ValueError) -> str:
    """What is wrong with a body, in one line."""
    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return str(exc)
