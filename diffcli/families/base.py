"""What diffcli needs to know about a pipeline family, in one place per family.

A `Family` answers, from the configs alone (no weights): the default size and the size multiple, how it sets
its timesteps; and, on the loaded pipeline: how to unpack its latents and estimate x0 for frames, and which
image-to-image and inpainting pipelines `from_pipe` builds on the same modules. The loop, sinks and plan stay generic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


UNETS = ("UNet2DConditionModel", "UNet2DModel")  # the UNets backend: openvino converts
UNET_EXTRAS = ("addition_embed_type", "class_embed_type", "time_cond_proj_dim", "num_class_embeds",
               "encoder_hid_dim_type")  # UNet config keys that add inputs the conversion does not feed


@dataclass(frozen=True)
class ControlNets:
    """A family's ControlNets in diffusers: the model class, and the pipelines `from_pipe` builds per task."""

    model: str                         # ControlNetModel | FluxControlNetModel | SD3ControlNetModel
    txt2img: str
    img2img: str | None = None
    inpaint: str | None = None
    matching: tuple[str, ...] = ()     # config keys a ControlNet shares with the denoiser (must be equal)


@dataclass(frozen=True)
class Family:
    """A pipeline family: the UNet pipelines (epsilon/v) or a flow-matching transformer."""

    name: str
    pipelines: tuple[str, ...]                 # diffusers pipeline class names this family runs
    denoiser: str = "unet"                     # the attribute holding the denoising network
    flow: bool = False                         # flow matching: the model predicts v, x0 = x_t - sigma * v
    packed: bool = False                       # latents packed 2x2 into a token sequence (Flux)
    text_encoders: str = ""                    # what encodes the prompt, for `inspect`
    weighted_prompts: bool = False             # A1111 weights in 75-token CLIP chunks
    img2img: str | None = None                 # the image-to-image pipeline built with from_pipe
    inpaint: str | None = None                 # the inpainting pipeline built with from_pipe (or loaded as is)
    vae_factor: int | None = None              # a fixed VAE downsampling the pipeline assumes (else the VAE's)
    custom_sigmas: bool = False                # the pipeline passes sigmas= (and mu=) to set_timesteps
    dynamic_mu: bool = False                   # mu= only when the scheduler shifts dynamically (SD3)
    binning: bool = False                      # resolution binning: generated at the nearest trained size
    cache_hooks: str = ""                      # diffusers' cache hooks: "mixin" | "one-context" | "" (none)
    long_tokenizer: str | None = None          # the T5 tokenizer whose max_sequence_length cuts prompts
    optional: tuple[str, ...] = ()             # text encoders/tokenizers the pipeline runs without
    sample_size: int | None = None             # a fixed default latent side the pipeline assumes (Flux: 128)
    controlnet: ControlNets | None = None      # its ControlNet pipelines (None: ControlNets are refused)
    openvino_refused: str = ""                 # why backend: openvino cannot convert this family's denoiser (measured)

    def patch(self, denoiser_config: dict[str, Any]) -> int:
        """The denoiser's patch size (1 for UNets; Flux's 2x2 packing counts as 2)."""
        if self.packed:
            return 2
        patch = denoiser_config.get("patch_size", 1)
        return patch if isinstance(patch, int) and 0 < patch <= 16 else 1

    def max_side(self, denoiser_config: dict[str, Any], factor: int) -> int | None:
        """The largest image side the denoiser can make, or None when its config sets no limit."""
        return None

    def size_multiple(self, denoiser_config: dict[str, Any], factor: int) -> int:
        """Requested widths and heights must be multiples of this."""
        import math

        return math.lcm(8, factor * self.patch(denoiser_config))

    def default_side(self, call_defaults: dict[str, Any], denoiser_config: dict[str, Any], factor: int) -> int:
        """The pipeline's default image side: its `__call__`'s height, else sample_size x the VAE factor."""
        if isinstance(call_defaults.get("height"), int):
            return call_defaults["height"]
        size = self.sample_size or denoiser_config.get("sample_size", 64)
        size = size[0] if isinstance(size, (list, tuple)) and size else size
        size = size if isinstance(size, int) and not isinstance(size, bool) else 64
        return size * factor

    def timestep_kwargs(self, steps: int, scheduler_config: dict[str, Any]) -> dict[str, Any]:
        """What the pipeline passes to `set_timesteps` besides the step count (for the dry run)."""
        if self.custom_sigmas:
            import numpy as np

            return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": 1.0}
        if self.dynamic_mu and scheduler_config.get("use_dynamic_shifting"):
            return {"mu": 1.0}
        return {}

    def unpack(self, pipe: Any, latents: Any, height: int, width: int) -> Any:
        """The step's latents as (B, C, h, w); packed families override this."""
        return latents

    def estimate_x0(self, scheduler: Any, model_output: Any, timestep: Any, sample: Any) -> Any:
        """x0 from a step's model output, for schedulers that do not report it."""
        from diffcli.plan.schedulers import is_flow

        if self.flow or is_flow(scheduler):
            return flow_x0(scheduler, model_output, sample)
        return variance_preserving_x0(scheduler, model_output, timestep, sample)

    def openvino_refusal(self, denoiser_class: str, denoiser_config: dict[str, Any]) -> str | None:
        """Why `backend: openvino` cannot convert this denoiser, or None. The base answers for UNets: plain
        `UNet2DConditionModel`/`UNet2DModel` only (no extra conditioning inputs, such as SDXL's added_cond_kwargs)."""
        if self.openvino_refused:
            return self.openvino_refused
        if denoiser_class not in UNETS:
            return f"converts {' and '.join(UNETS)} denoisers here, not {denoiser_class}"
        extra = [key for key in UNET_EXTRAS if denoiser_config.get(key) is not None]
        return f"takes no UNet with {', '.join(extra)} (extra conditioning inputs)" if extra else None

    def check_openvino(self, denoiser_class: str, denoiser_config: dict[str, Any]) -> None:
        """Raise the one-line PresetError (exit 2) naming the family and the reason when it cannot convert."""
        from diffcli.errors import PresetError

        reason = self.openvino_refusal(denoiser_class, denoiser_config)
        if reason:
            raise PresetError(f"backend: openvino: {self.name} ({denoiser_class}): {reason}",
                              hint="use backend: torch for this model")

    def openvino_inputs(self, config: dict[str, Any], batch: int, height: int, width: int,
                        text_length: int) -> dict[str, tuple[int, ...]]:
        """The tensors one denoiser call passes, in the converted model's input order: name (as the denoiser's
        forward takes it) -> shape, for a batch (CFG included), a latent height/width and a text length.
        The base answers for UNets: sample, a scalar timestep, and the text embeddings of a conditional UNet."""
        inputs: dict[str, tuple[int, ...]] = {"sample": (batch, config["in_channels"], height, width), "timestep": ()}
        if config.get("cross_attention_dim") is not None:
            inputs["encoder_hidden_states"] = (batch, text_length, config["cross_attention_dim"])
        return inputs


def flow_x0(scheduler: Any, velocity: Any, sample: Any) -> Any:
    """x0 = x_t - sigma_t * v, with sigma_t the sigma of the step just taken."""
    import torch

    index = max(int(getattr(scheduler, "step_index", 1) or 1) - 1, 0)
    sigmas = scheduler.sigmas
    sigma = sigmas[min(index, len(sigmas) - 1)].to(device=sample.device, dtype=torch.float32)
    return (sample.float() - sigma * velocity.float()).to(sample.dtype)


def variance_preserving_x0(scheduler: Any, model_output: Any, timestep: Any, sample: Any) -> Any:
    """x0 where x_t = sqrt(a) x0 + sqrt(1 - a) eps, a = alphas_cumprod[t] (PNDM, DPM-Solver, UniPC, DEIS)."""
    import torch

    index = int(torch.as_tensor(timestep).round().clamp(0, len(scheduler.alphas_cumprod) - 1))
    alpha = scheduler.alphas_cumprod[index].to(device=sample.device, dtype=torch.float32)
    kind = scheduler.config.get("prediction_type", "epsilon")
    x_t, out = sample.float(), model_output.float()
    if kind == "epsilon":
        x0 = (x_t - (1 - alpha).sqrt() * out) / alpha.sqrt()
    elif kind == "v_prediction":
        x0 = alpha.sqrt() * x_t - (1 - alpha).sqrt() * out
    else:
        x0 = out
    return x0.to(sample.dtype)
