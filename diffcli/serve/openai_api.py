"""OpenAI's Images API: `POST /v1/images/generations`, `GET /v1/models`, and the files `url` answers point at.

Errors have OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), so the official
clients raise their usual exceptions. `/v1/images/edits` is in openai_edits.py and answers as this does.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from diffcli.serve.door import Wanted, check_text
from diffcli.serve.errors import InterruptedRequest, NotFound, RequestError
from diffcli.serve.images import URL_PREFIX, b64, encode, is_served_name, save
from diffcli.serve.models import OPENAI_DEFAULTS, OpenAIImageRequest, parse, refuse_unsupported
from diffcli.serve.service import Service, plan, read_json, run_job, service_of
from diffcli.serve.worker import JobResult

router = APIRouter()
SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


def model_entry(service: Service) -> dict[str, Any]:
    return {"id": service.model_id, "object": "model", "created": int(service.started), "owned_by": "diffcli"}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The one model this server has loaded."""
    return {"object": "list", "data": [model_entry(service_of(request))]}


@router.get("/v1/models/{model}")
async def get_model(request: Request, model: str) -> dict[str, Any]:
    service = service_of(request)
    if model not in service.model_names:
        raise NotFound(f"the model '{model[:100]}' does not exist here", param="model", code="model_not_found")
    return model_entry(service)


def wanted_of(body: OpenAIImageRequest, service: Service,
              defaults: dict[str, tuple[Any, ...]] = OPENAI_DEFAULTS) -> Wanted:
    """The request's settings as preset keys (diffcli's extras under their own names)."""
    refuse_unsupported(body, defaults)
    if body.model is not None and body.model not in service.model_names:
        raise NotFound(f"model: '{body.model[:100]}' is not served here (this server serves '{service.model_id}')",
                       param="model", code="model_not_found")
    if body.user is not None:
        check_text("user", body.user)
    if body.output_compression is not None and not 0 <= body.output_compression <= 100:
        raise RequestError("output_compression: expected 0 to 100", param="output_compression")
    width = height = None
    if body.size not in (None, "auto"):
        match = SIZE.fullmatch(body.size)
        if match is None:
            raise RequestError(f"size: expected WIDTHxHEIGHT such as 512x512 or auto, got '{body.size[:40]}'",
                               param="size")
        width, height = int(match.group(1)), int(match.group(2))
    values = {"seed": ("seed", body.seed), "steps": ("steps", body.steps), "width": ("size", width),
              "height": ("size", height), "negative_prompt": ("negative_prompt", body.negative_prompt),
              "guidance_scale": ("guidance_scale", body.guidance_scale), "scheduler": ("scheduler", body.scheduler)}
    return Wanted(prompt=body.prompt, count=1 if body.n is None else body.n, count_field="n", values=values)


@router.post("/v1/images/generations")
async def generations(request: Request) -> dict[str, Any]:
    """Text to image; `b64_json` (default) or `url`; png (with A1111 and diffcli metadata), webp or jpeg."""
    body = parse(OpenAIImageRequest, await read_json(request))
    return await answer(request, body, wanted_of(body, service_of(request)))


async def answer(request: Request, body: OpenAIImageRequest, wanted: Wanted) -> dict[str, Any]:
    """Plan, queue and wait; the images as OpenAI's response (generations and edits alike)."""
    service = service_of(request)
    items = await plan(request, wanted)
    result = await run_job(request, items)
    if result.interrupted:
        raise InterruptedRequest()
    fmt = body.output_format or "png"
    data = await run_in_threadpool(_entries, service, result, fmt, body.output_compression,
                                   body.response_format == "url", str(request.base_url))
    return {"created": int(time.time()), "data": data, "output_format": fmt,
            "size": f"{items[0].width}x{items[0].height}"}


def _entries(service: Service, result: JobResult, fmt: str, quality: int | None, as_url: bool,
             base: str) -> list[dict[str, Any]]:
    entries = []
    for output in result.outputs:
        data = encode(output, fmt, quality)
        entry: dict[str, Any] = {"revised_prompt": output.item.prompt, "seed": output.item.seed}
        if as_url:
            entry["url"] = base.rstrip("/") + URL_PREFIX + save(service.output, data, fmt)
        else:
            entry["b64_json"] = b64(data)
        entries.append(entry)
    return entries


@router.get(URL_PREFIX + "{name}")
async def get_file(request: Request, name: str) -> Response:
    """An image a `response_format: url` answer named (only names the server made, from its own folder)."""
    path = service_of(request).output / name
    if not is_served_name(name) or not path.is_file():
        raise NotFound("no such image", param="name")
    data = await run_in_threadpool(path.read_bytes)
    return Response(data, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]])

