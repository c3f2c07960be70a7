"""diffcli: a scriptable command-line image generator built on Hugging Face Diffusers."""

__version__ = "0.1.0"
