"""Pipeline class name → family. A new family is a new module and one line here."""

from __future__ import annotations

from diffcli.families.base import Family
from diffcli.families.dit import LUMINA2, PIXART_SIGMA, SANA
from diffcli.families.flux import CHROMA, FLUX
from diffcli.families.sd3 import SD3
from diffcli.families.unet import DDPM, OTHER, SD, SDXL
from diffcli.families.upscale import SD_X2, SD_X4

FAMILIES: tuple[Family, ...] = (DDPM, SD, SDXL, SD3, FLUX, CHROMA, PIXART_SIGMA, SANA, LUMINA2, SD_X4, SD_X2)
_BY_PIPELINE = {pipeline: family for family in FAMILIES for pipeline in family.pipelines}


def family_for(class_name: str) -> Family:
    """The family of a pipeline class (its img2img/inpaint siblings included); OTHER when unknown."""
    if class_name in _BY_PIPELINE:
        return _BY_PIPELINE[class_name]
    for family in FAMILIES:
        if class_name in (family.img2img, family.inpaint):
            return family
    return OTHER


def family_named(name: str) -> Family:
    """A family by its short name (facts carry the name)."""
    for family in FAMILIES + (OTHER,):
        if family.name == name:
            return family
    return OTHER
