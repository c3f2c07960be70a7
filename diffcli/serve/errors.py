"""HTTP errors: the serving-only failures, and the one table that maps every error to a status and a body."""

from __future__ import annotations

from typing import Any

from diffcli.errors import DiffcliError, Interrupted, ModelError, OutputError, UsageError


class RequestError(UsageError):
    """A request the server refuses before any work: `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class Unauthorized(DiffcliError):
    """No or a wrong API key."""


class NotFound(DiffcliError):
    """An unknown route, model or file."""

    def __init__(self, message: str, param: str | None = None, code: str = "not_found") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class BodyTooLarge(DiffcliError):
    """The request body is larger than the server reads."""


class QueueFull(DiffcliError):
    """More queued images than --max-queue: come back in `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(DiffcliError):
    """The server is stopping: no new work."""


class Cancelled(DiffcliError):
    """The client went away before its work started."""


class ReadOnly(DiffcliError):
    """A settings route that this server only reads."""


# (error class, OpenAI status, A1111 status, OpenAI error type, code): the first row the error is an instance of.
TABLE: tuple[tuple[type[BaseException], int, int, str, str], ...] = (
    (Unauthorized, 401, 401, "invalid_request_error", "invalid_api_key"),
    (NotFound, 404, 404, "invalid_request_error", "not_found"),
    (ReadOnly, 405, 405, "invalid_request_error", "read_only"),
    (BodyTooLarge, 413, 413, "invalid_request_error", "body_too_large"),
    (QueueFull, 429, 503, "rate_limit_error", "queue_full"),
    (ShuttingDown, 503, 503, "server_error", "shutting_down"),
    (Cancelled, 499, 499, "invalid_request_error", "cancelled"),
    (Interrupted, 409, 409, "invalid_request_error", "interrupted"),
    (RequestError, 400, 422, "invalid_request_error", "invalid_value"),
    (UsageError, 400, 422, "invalid_request_error", "invalid_value"),  # the CLI's usage and preset errors
    (ModelError, 500, 500, "server_error", "model_error"),
    (OutputError, 500, 500, "server_error", "output_error"),
    (MemoryError, 503, 503, "server_error", "out_of_memory"),
    (DiffcliError, 500, 500, "server_error", "internal_error"),
    (BaseException, 500, 500, "server_error", "internal_error"),
)


def describe(err: BaseException, a1111: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, extra headers) for any error: OpenAI's `{"error": {...}}` shape on every route,
    plus FastAPI's `detail` on the A1111 routes (what A1111 clients print)."""
    if _out_of_memory(err):
        err = MemoryError()
    for cls, openai_status, a1111_status, kind, code in TABLE:
        if isinstance(err, cls):
            break
    status = a1111_status if a1111 else openai_status
    message = _message(err)
    error = {"message": message, "type": kind, "param": getattr(err, "param", None),
             "code": getattr(err, "code", None) or code}
    body: dict[str, Any] = {"error": error}
    if a1111:
        body["detail"] = message
    headers: dict[str, str] = {}
    if isinstance(err, QueueFull):
        headers["Retry-After"] = str(err.retry_after)
    if isinstance(err, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if code == "interrupted":
        headers["x-should-retry"] = "false"  # the official clients retry 409s otherwise
    return status, body, headers


def _out_of_memory(err: BaseException) -> bool:
    """Host or accelerator out-of-memory, by type (torch's only if torch is loaded)."""
    import sys

    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    return isinstance(err, MemoryError) or (oom is not None and isinstance(err, oom))


def _message(err: BaseException) -> str:
    from diffcli.plan.text import one_line

    if isinstance(err, MemoryError):
        return "not enough memory for this request (ask for fewer or smaller images)"
    if isinstance(err, DiffcliError):
        return one_line(err.message + (f" ({err.hint})" if err.hint else ""), 500)
    return f"internal error: {type(err).__name__} (the server log has one line about it)"


class InterruptedRequest(Interrupted):
    """The request's batch was interrupted (`POST /sdapi/v1/interrupt`, or the server shutting down)."""

    def __init__(self) -> None:
        super().__init__()
        self.message = "the request was interrupted (POST /sdapi/v1/interrupt, or the server is shutting down)"
