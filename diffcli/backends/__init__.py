"""Where the denoiser runs besides torch: one package per backend."""
