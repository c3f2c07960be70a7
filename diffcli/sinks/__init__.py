"""Where results go: the output folder, images + metadata, frames, trace sheet/animation, progress."""
