"""scikit-learn's handwritten digits as training data, prompts for them, and a digit classifier.

scikit-learn is an optional dependency (the `train` extra): only training and the
quality benchmark import this module.
"""

from __future__ import annotations

from typing import Any

IMAGE_SIZE = 16  # 8x8 digits upsampled 2x: all their detail, a quarter of 32x32's compute
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a handwritten digit {n}", "a handwritten digit {w}", "the number {n}", "the number {w}", "{w}", "{n}",
    "digit {n}", "digit {w}", "a {w}", "handwritten {w}", "number {n}", "the digit {w}",
]
VOCAB_WORDS = ["a", "handwritten", "digit", "the", "number", "of"] + WORDS


def _require_sklearn() -> Any:
    try:
        import sklearn.datasets
    except ImportError:
        from diffcli.errors import UsageError

        raise UsageError("training needs scikit-learn", hint='install the extra: pip install "diffcli[train]"') from None
    return sklearn.datasets


def load_digits_8x8() -> tuple[Any, Any]:
    """(images float32 N×8×8 in [0, 16], labels int64 N) from scikit-learn's bundled copy."""
    import numpy as np

    data = _require_sklearn().load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


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


def train_classifier(seed: int = 0, holdout: float = 0.0) -> tuple[Any, float | None]:
    """An SVM digit classifier on the same transform generated images go through.

    Returns (classifier, held-out share classified right with confidence >= 0.8, if holdout > 0).
    """
    import numpy as np
    from sklearn.svm import SVC

    images, labels = load_digits_8x8()
    features = to_classifier_space(to_model_space(images))
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - holdout))
    train, test = order[:cut], order[cut:]
    classifier = SVC(gamma=0.001, C=10.0, probability=True, random_state=seed).fit(features[train], labels[train])
    score = None
    if holdout > 0:
        proba = classifier.predict_proba(features[test])
        score = float(((proba.argmax(1) == labels[test]) & (proba.max(1) >= 0.8)).mean())
    return classifier, score


def classify(classifier: Any, pixels: Any) -> tuple[Any, Any]:
    """(predicted digit, confidence) for each image."""
    proba = classifier.predict_proba(to_classifier_space(pixels))
    return proba.argmax(1), proba.max(1)
