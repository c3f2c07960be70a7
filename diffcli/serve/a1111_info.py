"""A1111's read-only routes: the loaded model, its samplers and schedulers, and the options (never written)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from diffcli.serve.errors import ReadOnly
from diffcli.serve.samplers import samplers
from diffcli.serve.service import service_of

router = APIRouter()


@router.get("/sdapi/v1/sd-models")
async def sd_models(request: Request) -> list[dict[str, Any]]:
    """The one model this server loaded (no file paths)."""
    service = service_of(request)
    return [{"title": service.model_id, "model_name": service.model_id, "hash": None, "sha256": None,
             "filename": service.model_id, "config": None}]


@router.get("/sdapi/v1/samplers")
async def sampler_list(request: Request) -> list[dict[str, Any]]:
    """A1111 sampler names this model can use; each alias is diffcli's short name."""
    return [{"name": label, "aliases": [name], "options": {}}
            for label, name in samplers(service_of(request).door.compatible)]


@router.get("/sdapi/v1/schedulers")
async def scheduler_list(request: Request) -> list[dict[str, Any]]:
    """A1111 1.9's schedule types that diffcli maps: Automatic (the sampler's own) and Karras."""
    return [{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1, "need_inner_model": False},
            {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False}]


@router.get("/sdapi/v1/options")
async def options(request: Request) -> dict[str, Any]:
    """The settings A1111 clients read; read-only."""
    service = service_of(request)
    return {"sd_model_checkpoint": service.model_id, "sd_checkpoint_hash": None, "samples_format": "png",
            "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "eta_ddim": 0.0, "eta_ancestral": 1.0}


@router.post("/sdapi/v1/options")
async def set_options(request: Request) -> dict[str, Any]:
    raise ReadOnly("the options are read-only here: this server serves one model with fixed settings")
