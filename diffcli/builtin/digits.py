"""scikit-learn's handwritten digits: the fixed train/held-out split, prompts, and the image transforms.

scikit-learn is an optional dependency (the `train` extra): only training, the quality judge
and the quality benchmark import this module.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Any

IMAGE_SIZE = 16  # 8x8 digits upsampled 2x: all their detail, a quarter of 32x32's compute
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a handwritten digit {n}", "a handwritten digit {w}", "the number {n}", "the number {w}", "{w}", "{n}",
    "digit {n}", "digit {w}", "a {w}", "handwritten {w}", "number {n}", "the digit {w}",
]
VOCAB_WORDS = ["a", "handwritten", "digit", "the", "number", "of"] + WORDS
SPLITS = ("train", "heldout", "all")
HELDOUT_SHARE = 0.2
SPLIT_KEY = "diffcli-digits-split-v1"


def _require_sklearn() -> Any:
    try:
        import sklearn.datasets
    except ImportError:
        from diffcli.errors import UsageError

        raise UsageError("training needs scikit-learn", hint='install the extra: pip install "diffcli[train]"') from None
    return sklearn.datasets


@lru_cache(maxsize=1)
def _bundled() -> tuple[Any, Any]:
    import numpy as np

    data = _require_sklearn().load_digits()
    images, labels = data.images.astype(np.float32), data.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_digits_8x8() -> tuple[Any, Any]:
    """(images float32 N×8×8 in [0, 16], labels int64 N) from scikit-learn's bundled copy (all 1,797)."""
    images, labels = _bundled()
    return images.copy(), labels.copy()


def split_indices() -> tuple[Any, Any]:
    """(train, held-out) indices into `load_digits()`: a fixed, stratified 80/20 split.

    Within each class, images are ordered by crc32 of "<SPLIT_KEY>:<index>" (no random generator,
    so no library version can change it) and the first round(20% of the class) are held out.
    The generators train on "train" only; the quality judge is fitted on "heldout" only.
    """
    import numpy as np

    _, labels = load_digits_8x8()
    heldout: list[int] = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit).tolist()
        members.sort(key=lambda i: zlib.crc32(f"{SPLIT_KEY}:{i}".encode()))
        heldout += members[: round(HELDOUT_SHARE * len(members))]
    mask = np.zeros(len(labels), dtype=bool)
    mask[heldout] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def load_split(split: str) -> tuple[Any, Any]:
    """(images N×8×8, labels N) of one split: "train" (80%), "heldout" (20%) or "all"."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r} (choose {', '.join(SPLITS)})")
    images, labels = load_digits_8x8()
    if split == "all":
        return images, labels
    index = split_indices()[0 if split == "train" else 1]
    return images[index], labels[index]


def to_model_space(images_8x8: Any) -> Any:
    """8×8 in [0, 16] → torch N×1×16×16 in [-1, 1] (bilinear upsampling)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images_8x8, dtype=torch.float32).unsqueeze(1) / 16.0 * 2 - 1
    return F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).clamp(-1, 1)


def to_classifier_space(pixels: Any) -> Any:
    """Images (uint8 N×H×W[×C] or float N×1×H×W in [-1, 1]) → N×64 features on sklearn's 0–16 scale."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8:
        x = torch.as_tensor(pixels, dtype=torch.float32)
        if x.ndim == 4:
            x = x.mean(-1)
        x = x.unsqueeze(1) / 255.0
    else:
        x = (torch.as_tensor(pixels, dtype=torch.float32) + 1) / 2
    x = F.adaptive_avg_pool2d(x, (8, 8)) * 16.0
    return x.reshape(len(x), 64).numpy()


def prompt_for(digit: int, template: int) -> str:
    """One of the training prompt forms for a digit."""
    return TEMPLATES[template % len(TEMPLATES)].format(n=digit, w=WORDS[digit])
