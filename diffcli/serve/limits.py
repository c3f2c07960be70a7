"""What one request may ask for and how much the server holds: checked at the door, before any work."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PROMPT_CHARS = 16_384   # per prompt and per negative prompt
MAX_FIELD_CHARS = 256       # any other text field (sampler names, formats, task ids)
MAX_IMAGES_PER_REQUEST = 64  # and never more than --max-queue
GRACE_S = 2.0               # on SIGTERM/SIGINT the running batch has this long before it is interrupted


@dataclass(frozen=True)
class Limits:
    """The server's bounds (from the `diffcli serve` flags)."""

    max_batch: int = 8            # images per pipeline call
    max_queue: int = 64           # images waiting (not yet started) before 429/503
    max_steps: int = 150          # denoising steps per image
    max_pixels: int = 2048 * 2048  # width x height per image
    max_body: int = 96 << 20      # request body bytes (a 64 MiB init image is ~86 MiB of base64)
    wait_s: float = 0.01          # how long a batch waits for more requests that can share it

    @property
    def max_images(self) -> int:
        """Images one request may ask for."""
        return min(MAX_IMAGES_PER_REQUEST, self.max_queue)
