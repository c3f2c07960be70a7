"""A1111's API (`/sdapi/v1/...`): txt2img, img2img (inpainting with a mask), progress and interrupt, with
A1111's field names.

Seeds are seed + i over batch_size x n_iter images, like the CLI; -1 draws a random seed. Every
PNG carries the A1111 and diffcli metadata a CLI output has. Fields diffcli cannot honour are
refused (422, naming the field) when set, and ignored at their defaults.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from diffcli import __version__
from diffcli.serve.door import Wanted
from diffcli.serve.errors import RequestError
from diffcli.serve.images import b64, encode, png_b64
from diffcli.serve.limits import MAX_FIELD_CHARS
from diffcli.serve.models import (A1111_DEFAULTS, A1111_IGNORED, A1111Img2Img, A1111Txt2Img, parse,
                                  refuse_unsupported)
from diffcli.serve.samplers import label_of, scheduler_for
from diffcli.serve.service import Service, plan, read_json, run_job, service_of
from diffcli.serve.worker import JobResult
from diffcli.sinks.metadata import A1111_KEY

router = APIRouter()


def wanted_of(body: A1111Txt2Img, service: Service) -> Wanted:
    """A1111's fields as preset keys; the count is batch_size x n_iter."""
    refuse_unsupported(body, A1111_DEFAULTS, A1111_IGNORED)
    for name in ("batch_size", "n_iter"):
        if getattr(body, name) is not None and getattr(body, name) < 1:
            raise RequestError(f"{name}: expected an integer >= 1", param=name)
    if body.force_task_id is not None and (len(body.force_task_id) > MAX_FIELD_CHARS or not body.force_task_id.isprintable()):
        raise RequestError(f"force_task_id: at most {MAX_FIELD_CHARS} printable characters", param="force_task_id")
    sampler = body.sampler_name if body.sampler_name is not None else body.sampler_index
    field = "sampler_name" if body.sampler_name is not None else "sampler_index"
    if sampler is not None and len(sampler) > MAX_FIELD_CHARS:
        raise RequestError(f"{field}: too long", param=field)
    scheduler = scheduler_for(sampler, body.scheduler, service.door.compatible, field)
    seed = None if body.seed is None or body.seed == -1 else body.seed
    values: dict[str, tuple[str, Any]] = {
        "seed": ("seed", seed), "steps": ("steps", body.steps), "guidance_scale": ("cfg_scale", body.cfg_scale),
        "width": ("width", body.width), "height": ("height", body.height),
        "negative_prompt": ("negative_prompt", body.negative_prompt), "scheduler": (field, scheduler)}
    count = (body.batch_size or 1) * (body.n_iter or 1)
    wanted = Wanted(prompt=body.prompt, count=count, count_field="batch_size", values=values)
    if isinstance(body, A1111Img2Img):
        if len(body.init_images) != 1:
            raise RequestError("init_images: diffcli takes exactly one init image", param="init_images")
        if body.resize_mode not in (None, 0, 1):
            raise RequestError("resize_mode: diffcli fits the init image by cover and centre crop (0 or 1)",
                               param="resize_mode")
        wanted.values["strength"] = ("denoising_strength", body.denoising_strength)
        wanted.init_image = ("init_images[0]", body.init_images[0])
        if body.mask:
            inpaint_values(body, wanted, service)
    return wanted


INPAINTING_FILLS = (None, 0, 1, 2, 3)


def inpaint_values(body: A1111Img2Img, wanted: Wanted, service: Service) -> None:
    """A1111's mask fields as diffcli's inpaint keys: the mask is read as the CLI reads one (white repaints,
    transparent keeps); `inpaint_full_res` ("Only masked") is `padding_mask_crop`."""
    wanted.mask = ("mask", body.mask or "")
    blur, field = body.mask_blur, "mask_blur"
    if blur is None and (body.mask_blur_x is not None or body.mask_blur_y is not None):
        if body.mask_blur_x != body.mask_blur_y:
            raise RequestError("mask_blur_y: diffcli blurs a mask alike both ways (set mask_blur, or mask_blur_x "
                               "equal to mask_blur_y)", param="mask_blur_y")
        blur, field = body.mask_blur_x, "mask_blur_x"
    wanted.values["mask_blur"] = (field, blur)
    for name in ("inpainting_mask_invert", "inpaint_full_res"):
        if getattr(body, name) not in (None, 0, 1):
            raise RequestError(f"{name}: expected 0 or 1", param=name)
    if body.inpainting_fill not in INPAINTING_FILLS:  # ignored (diffusers starts from the noised image), but A1111's
        raise RequestError("inpainting_fill: expected 0, 1, 2 or 3 (fill, original, latent noise, latent nothing)",
                           param="inpainting_fill")
    channels = service.door.facts.channels
    if body.inpaint_full_res and channels != 3:
        raise RequestError(f"inpaint_full_res: \"Only masked\" crops through diffusers' RGB path; this model makes "
                           f"{channels}-channel images (send inpaint_full_res 0)", param="inpaint_full_res")
    if body.inpainting_mask_invert is not None:
        wanted.values["invert_mask"] = ("inpainting_mask_invert", bool(body.inpainting_mask_invert))
    if body.inpaint_full_res is not None and not body.inpaint_full_res:
        wanted.unset += ("padding_mask_crop",)
    elif body.inpaint_full_res:
        padding = body.inpaint_full_res_padding
        wanted.values["padding_mask_crop"] = ("inpaint_full_res_padding", padding if padding is not None else
                                              service.door.preset.padding_mask_crop or 0)


async def generate(request: Request, model: type[A1111Txt2Img]) -> dict[str, Any]:
    service = service_of(request)
    body = parse(model, await read_json(request))
    wanted = wanted_of(body, service)
    items = await plan(request, wanted)
    result = await run_job(request, items, body.force_task_id)
    images = await run_in_threadpool(lambda: [b64(encode(o)) for o in result.outputs]) if body.send_images else []
    parameters = body.model_dump()
    for name in ("init_images", "mask"):  # the uploads themselves are not sent back
        parameters.pop(name, None)
    return {"images": images, "parameters": parameters, "info": json.dumps(info(service, items, result))}


def info(service: Service, items: list[Any], result: JobResult) -> dict[str, Any]:
    """A1111's `info` document: the seeds and the infotexts (each image's `parameters` PNG text)."""
    first = items[0]
    made = [output.item for output in result.outputs]
    return {
        "prompt": first.prompt, "all_prompts": [i.prompt for i in made], "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [i.negative_prompt for i in made], "seed": first.seed,
        "all_seeds": [i.seed for i in made], "subseed": -1, "all_subseeds": [-1 for _ in made], "subseed_strength": 0,
        "width": first.width, "height": first.height, "sampler_name": label_of(first.scheduler, service.default_sampler),
        "cfg_scale": first.guidance_scale, "steps": first.steps, "batch_size": len(items), "restore_faces": False,
        "sd_model_name": service.model_id, "sd_model_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": first.strength, "extra_generation_params": {}, "index_of_first_image": 0,
        "infotexts": [output.text[A1111_KEY] for output in result.outputs], "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": 1, "is_using_inpainting_conditioning": False,
        "version": f"diffcli {__version__}", "interrupted": result.interrupted,
    }


@router.post("/sdapi/v1/txt2img")
async def txt2img(request: Request) -> dict[str, Any]:
    return await generate(request, A1111Txt2Img)


@router.post("/sdapi/v1/img2img")
async def img2img(request: Request) -> dict[str, Any]:
    return await generate(request, A1111Img2Img)


@router.post("/sdapi/v1/interrupt")
async def interrupt(request: Request) -> dict[str, Any]:
    """Stop the running batch at its next step; its requests answer with the images already made."""
    service_of(request).worker.interrupt()
    return {}


@router.post("/sdapi/v1/skip")
async def skip(request: Request) -> dict[str, Any]:
    """As interrupt (diffcli has no per-image skip inside a batch)."""
    service_of(request).worker.interrupt()
    return {}


@router.get("/sdapi/v1/progress")
async def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    """The running job: progress 0-1, seconds left, the step; a preview of its first image unless skipped."""
    worker = service_of(request).worker
    state = worker.progress()
    current = None
    if not skip_current_image and state["job"]:
        worker.preview_wanted = True
        pixels = worker.preview
        current = await run_in_threadpool(png_b64, pixels) if pixels is not None else None
    eta = state["eta"]
    return {"progress": state["progress"], "eta_relative": eta if eta is not None else 0.0,
            "state": {"skipped": False, "interrupted": state["interrupted"], "job": state["job"],
                      "job_count": state["job_count"], "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "job_no": 0,
                      "sampling_step": state["step"], "sampling_steps": state["steps"]},
            "current_image": current, "textinfo": None}


@router.post("/internal/progress")
async def task_progress(request: Request) -> dict[str, Any]:
    """One job's progress by its `force_task_id` (A1111's per-task progress route)."""
    body = await read_json(request)
    task = body.get("id_task") if isinstance(body, dict) else None
    if not isinstance(task, str) or len(task) > MAX_FIELD_CHARS:
        raise RequestError("id_task: expected a task id string", param="id_task")
    status = service_of(request).worker.job_status(task)
    if status is None:
        return {"active": False, "queued": False, "completed": False, "progress": None, "eta": None,
                "live_preview": None, "id_live_preview": -1, "textinfo": "Unknown task"}
    text = "In queue..." if status["queued"] else ("Done" if status["completed"] else f"Step {status['step']}")
    return {"active": status["active"], "queued": status["queued"], "completed": status["completed"],
            "progress": status["progress"], "eta": status["eta"], "live_preview": None, "id_live_preview": -1,
            "textinfo": text}
