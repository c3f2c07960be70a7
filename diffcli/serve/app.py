"""The FastAPI app: the gate (API key, body size, one log line, no tracebacks) in front of the routes.

Errors become responses in one place (`errors.describe`): OpenAI's error shape on every route,
plus A1111's `detail` on /sdapi and /internal routes.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from diffcli.errors import DiffcliError
from diffcli.serve.errors import BodyTooLarge, NotFound, ReadOnly, RequestError, Unauthorized, describe
from diffcli.serve.security import authorized
from diffcli.serve.service import Service


def is_a1111(path: str) -> bool:
    return path.startswith(("/sdapi/", "/internal/"))


def error_response(err: BaseException, path: str) -> JSONResponse:
    status, body, headers = describe(err, is_a1111(path))
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(service: Service) -> FastAPI:
    """The app with every route; `service` is the loaded model, the queue and the limits."""
    from diffcli.serve import a1111_api, a1111_info, openai_api, openai_edits

    app = FastAPI(title="diffcli", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    for module in (openai_api, openai_edits, a1111_api, a1111_info):
        app.include_router(module.router)

    @app.exception_handler(DiffcliError)
    async def diffcli_error(request: Request, err: DiffcliError) -> JSONResponse:
        return error_response(err, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        name = str(first.get("loc", ("", ""))[-1])
        return error_response(RequestError(f"{name}: {first.get('msg', 'invalid')}", param=name), request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        wrapped: DiffcliError = NotFound(f"no route {request.method} {request.url.path[:200]}")
        if err.status_code == 405:
            wrapped = ReadOnly(f"{request.method} is not allowed on {request.url.path[:200]}")
        return error_response(wrapped, request.url.path)

    app.add_middleware(Gate, service=service)
    return app


class Gate:
    """Pure ASGI middleware: API key and body size checked on the headers (before the body is read), the
    streamed body counted, one log line per request, and any unexpected error a JSON 500 (no traceback)."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        sent: dict[str, Any] = {"status": 0}
        state = scope.setdefault("state", {})

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            refusal = self._refusal(headers)
            if refusal is not None:
                await error_response(refusal, path)(scope, receive, send_logged)
            else:
                await self.app(scope, self._counted(receive), send_logged)
        except Exception as err:  # noqa: BLE001 - the boundary: one line in the log, a JSON 500 to the client
            self.service.log(f"internal error on {path[:200]}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
            if not sent["status"]:
                await error_response(err, path)(scope, receive, send_logged)
        finally:
            client = (scope.get("client") or ("-", 0))[0]
            status = 499 if state.get("disconnected") else sent["status"]
            images = f" {state['images']} images" if state.get("images") else ""
            if state.get("batches"):
                images += f" (batches of {', '.join(map(str, state['batches']))})"
            self.service.log(f'{client} "{scope.get("method")} {path[:200]}" {status}{images} '
                             f"{time.perf_counter() - started:.3f}s")

    def _refusal(self, headers: dict[bytes, bytes]) -> DiffcliError | None:
        if not authorized(headers.get(b"authorization"), self.service.key):
            return Unauthorized("a valid API key is needed: Authorization: Bearer <key>")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                return RequestError("Content-Length: not a number", param="Content-Length")
            if int(length) > self.service.limits.max_body:
                return _too_large(self.service.limits.max_body)
        return None

    def _counted(self, receive: Any) -> Any:
        limit, seen = self.service.limits.max_body, [0]

        async def counted() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise _too_large(limit)
            return message

        return counted


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the request body is larger than {limit:,} bytes (--max-body-mb)")
