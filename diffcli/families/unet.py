"""The UNet families: DDPM and LDM (unconditional), Stable Diffusion 1.x/2.x, SDXL, and the fallback."""

from __future__ import annotations

from diffcli.families.base import ControlNets, Family

UNET_MATCH = ("cross_attention_dim", "addition_embed_type", "block_out_channels", "layers_per_block")

DDPM = Family("ddpm", ("DDPMPipeline", "DDIMPipeline", "LDMPipeline", "ScoreSdeVePipeline"))
SD = Family("sd", ("StableDiffusionPipeline",), text_encoders="CLIP (77 tokens)", weighted_prompts=True,
            img2img="StableDiffusionImg2ImgPipeline", inpaint="StableDiffusionInpaintPipeline",
            controlnet=ControlNets("ControlNetModel", "StableDiffusionControlNetPipeline",
                                   "StableDiffusionControlNetImg2ImgPipeline",
                                   "StableDiffusionControlNetInpaintPipeline", UNET_MATCH))
SDXL = Family("sdxl", ("StableDiffusionXLPipeline",), text_encoders="CLIP-L + CLIP-G (77 tokens)",
              weighted_prompts=True, img2img="StableDiffusionXLImg2ImgPipeline",
              inpaint="StableDiffusionXLInpaintPipeline",
              controlnet=ControlNets("ControlNetModel", "StableDiffusionXLControlNetPipeline",
                                     "StableDiffusionXLControlNetImg2ImgPipeline",
                                     "StableDiffusionXLControlNetInpaintPipeline", UNET_MATCH))
OTHER = Family("other", ())  # any other DiffusionPipeline: called as is, with its own defaults
