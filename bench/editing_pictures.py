"""Pictures for docs/editing.md, made offline by the built-in digits-text model through the real CLI.

docs/inpaint-digits.png: a held-out handwritten 3 | mask (left half) | repainted as "a handwritten digit 8".
docs/hires-digits.png: a 16 px "5" | --hires 2 (lanczos) | --hires 2 --hires-upscaler latent.
Prints what the held-out judge (diffcli.builtin.judge.classify) reads for the inpainted images.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SCALE = 4  # nearest-neighbour, so 16 px digits stay visible
SEEDS = 8


def cli(*args: str) -> list[Path]:
    """Run `python -m diffcli ... --json` and return the written image paths."""
    done = subprocess.run([sys.executable, "-m", "diffcli", *args, "--quiet", "--json"], capture_output=True,
                          text=True, check=True)
    return [Path(entry["path"]) for entry in json.loads(done.stdout)["images"]]


def grey(path: Path, size: int = 32) -> Image.Image:
    """An image as greyscale, resized (nearest) to size x size."""
    with Image.open(path) as image:
        return image.convert("L").resize((size, size), Image.NEAREST)


def strip(labelled: list[tuple[str, Image.Image]], cell: int = 32) -> Image.Image:
    """Cells side by side, scaled SCALE times (nearest), a label above each."""
    side, label = cell * SCALE, 12
    sheet = Image.new("L", (len(labelled) * (side + 4), side + label), 255)
    draw = ImageDraw.Draw(sheet)
    for i, (text, image) in enumerate(labelled):
        sheet.paste(image.resize((side, side), Image.NEAREST), (i * (side + 4), label))
        draw.text((i * (side + 4) + 2, 0), text, fill=0)
    return sheet


def inpaint_picture(work: Path) -> None:
    from diffcli.builtin.digits import load_split, to_model_space
    from diffcli.builtin.judge import classify

    images, labels = load_split("heldout")
    x = to_model_space(images[np.flatnonzero(labels == 3)[0]][None])[0, 0]
    Image.fromarray(((x + 1) / 2 * 255).round().clamp(0, 255).byte().numpy(), "L").save(work / "digit3.png")
    left = np.zeros((16, 16), dtype=np.uint8)
    left[:, :8] = 255
    Image.fromarray(left, "L").save(work / "left.png")
    outs = cli("inpaint", "digit3.png", "left.png", "a handwritten digit 8", "--preset", "digits-text",
               "--strength", "1", "--seed", "0", "-n", str(SEEDS), "-o", "inpainted")
    read = classify(np.stack([np.asarray(Image.open(p).convert("L")) for p in outs]))[0]
    print(f"judge reads {list(map(int, read))}: {(read == 8).sum()}/{len(read)} are 8")
    cells = [("init", grey(work / "digit3.png", 16)), ("mask", grey(work / "left.png", 16))]
    cells += [(f"seed {i}", grey(p, 16)) for i, p in enumerate(outs)]
    strip(cells, 16).save(ROOT / "docs" / "inpaint-digits.png", optimize=True)


def hires_picture() -> None:
    common = ("txt2img", "a handwritten digit 5", "--preset", "digits-text", "--width", "16", "--height", "16",
              "--seed", "0")
    base = cli(*common, "-o", "base")[0]
    lanczos = cli(*common, "--hires", "2", "-o", "lanczos")[0]
    latent = cli(*common, "--hires", "2", "--hires-upscaler", "latent", "-o", "latent")[0]
    strip([("base 16px", grey(base)), ("hires lanczos", grey(lanczos)), ("hires latent", grey(latent))]
          ).save(ROOT / "docs" / "hires-digits.png", optimize=True)


if __name__ == "__main__":
    import os

    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # the CLI writes its images here
        inpaint_picture(Path(folder))
        hires_picture()
