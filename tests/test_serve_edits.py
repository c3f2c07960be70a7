"""`POST /v1/images/edits` driven by the official `openai` client, and A1111's img2img with a mask: the real server
(digits-text, 4 steps) against `diffcli inpaint` / `diffcli img2img` pixel for pixel, OpenAI's mask convention
(fully transparent = edit), bad uploads refused in OpenAI's error shape, and no upload left on disk. The field
mapping and the form reader are also checked in-process (fast)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import types
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_dev_extra, run_cli
from tests.serve_server import PROMPT, Server, pixels, raw_http, text_chunks

pytestmark = [pytest.mark.xdist_group("serve")]
require_dev_extra("fastapi")
require_dev_extra("uvicorn")
require_dev_extra("python_multipart")
openai = require_dev_extra("openai")
slow = pytest.mark.slow

EDIT = "a handwritten digit 8"
CLI = ("--preset", "digits-text", "--steps", "4", "--quiet")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-edits")
    private = folder / "tmp"  # the server's TMPDIR: its private upload folder is made in here
    private.mkdir()
    started = Server(folder, "--max-batch", "4", "--max-body-mb", "2", env={"TMPDIR": str(private)})
    started.cwd, started.private = folder, private
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait(10)


@pytest.fixture(scope="module")
def files(server, tmp_path_factory):
    """A digit the server drew; OpenAI's RGBA mask (right half fully transparent, a column at alpha 1 that
    must be kept); diffcli's white = repaint mask of the same area, and its inverse; the image with that alpha."""
    folder = tmp_path_factory.mktemp("edit-files")
    made = server.client().images.generate(prompt=PROMPT, extra_body={"seed": 3})
    init = folder / "init.png"
    init.write_bytes(base64.b64decode(made.data[0].b64_json))
    alpha = np.full((16, 16), 255, np.uint8)
    alpha[:, 9:] = 0
    alpha[:, 8] = 1  # nearly transparent: OpenAI edits only where alpha is 0
    colours = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    paths = {"init": init, "rgba": folder / "mask-rgba.png", "white": folder / "mask-white.png",
             "inverse": folder / "mask-inverse.png", "transparent": folder / "init-transparent.png"}
    Image.fromarray(np.dstack([colours, alpha]), "RGBA").save(paths["rgba"])
    white = np.where(alpha == 0, 255, 0).astype(np.uint8)
    Image.fromarray(white, "L").save(paths["white"])
    Image.fromarray(255 - white, "L").save(paths["inverse"])
    grey = np.asarray(Image.open(init).convert("L"))
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(paths["transparent"])
    return paths


def cli_images(tmp_path, name, *args):
    done = run_cli(*args, *CLI, "-o", str(tmp_path / name))
    assert done.returncode == 0, done.stderr
    return sorted((tmp_path / name).glob("0000-s*.png"), key=lambda path: int(path.name.split("-s")[1].split("-")[0]))


def decoded(entry):
    return pixels(base64.b64decode(entry.b64_json))


@slow
def test_edit_equals_cli_inpaint_with_transparent_as_white_while_another_edit_runs(server, files, tmp_path):
    expected = cli_images(tmp_path, "cli", "inpaint", str(files["init"]), str(files["white"]), EDIT, "--seed", "5",
                          "-n", "2", "--strength", "1")
    inverse = cli_images(tmp_path, "inverse", "inpaint", str(files["init"]), str(files["inverse"]), EDIT, "--seed", "5",
                         "-n", "1", "--strength", "1")
    results: dict[str, object] = {}

    def edit(name: str, seed: int) -> None:
        with open(files["init"], "rb") as image, open(files["rgba"], "rb") as mask:
            results[name] = server.client().images.edit(image=image, mask=mask, prompt=EDIT, n=2,
                                                        extra_body={"seed": seed, "strength": 1.0})

    threads = [threading.Thread(target=edit, args=("ours", 5)), threading.Thread(target=edit, args=("other", 77))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ours = results["ours"]
    assert [entry.seed for entry in ours.data] == [5, 6] and ours.size == "16x16"
    assert [entry.seed for entry in results["other"].data] == [77, 78]
    for entry, path in zip(ours.data, expected):
        assert np.abs(decoded(entry) - pixels(path.read_bytes())).max() <= 2
    assert np.abs(decoded(ours.data[0]) - pixels(inverse[0].read_bytes())).max() > 20  # transparent is not "keep"
    chunks = text_chunks(base64.b64decode(ours.data[0].b64_json))
    assert "Denoising strength: 1.0" in chunks["parameters"] and json.loads(chunks["diffcli"])["mask_image"]


@slow
def test_edit_without_a_mask_uses_the_images_transparency_else_redraws_it_all(server, files, tmp_path):
    client = server.client()
    with open(files["transparent"], "rb") as image:
        masked = client.images.edit(image=image, prompt=EDIT, extra_body={"seed": 9})
    expected = cli_images(tmp_path, "masked", "inpaint", str(files["transparent"]), str(files["white"]), EDIT,
                          "--seed", "9", "-n", "1")
    assert np.abs(decoded(masked.data[0]) - pixels(expected[0].read_bytes())).max() <= 2
    with open(files["init"], "rb") as image:
        whole = client.images.edit(image=image, prompt=EDIT, extra_body={"seed": 9, "strength": 0.6})
    expected = cli_images(tmp_path, "whole", "img2img", str(files["init"]), EDIT, "--seed", "9", "-n", "1",
                          "--strength", "0.6")
    assert np.abs(decoded(whole.data[0]) - pixels(expected[0].read_bytes())).max() <= 2


def multipart(fields: dict[str, str] | list[tuple[str, str]], uploads: list[tuple[str, bytes]],
              cut: int = 0) -> tuple[bytes, str]:
    """A multipart/form-data body by hand (the client refuses to send a broken one), `cut` bytes short."""
    boundary = uuid.uuid4().hex
    pairs = fields.items() if isinstance(fields, dict) else fields
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in pairs)
    body += b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in uploads)
    body += f"--{boundary}--\r\n".encode()
    return body[:len(body) - cut], f"multipart/form-data; boundary={boundary}"


def post_form(server, fields, uploads, cut=0):
    body, kind = multipart(fields, uploads, cut)
    return raw_http(server, b"POST /v1/images/edits", {"Content-Type": kind, "Content-Length": str(len(body))}, body)


@slow
def test_bad_uploads_are_4xx_naming_the_field_and_nothing_is_left_on_disk(server, files, tmp_path):
    from tests.test_img2img import _png_header_only

    init = files["init"].read_bytes()
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000).read_bytes()
    small = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(small, format="PNG")
    gif = io.BytesIO()
    Image.new("L", (16, 16)).save(gif, format="GIF")
    cases = [({"image": ("x.png", b"not an image", "image/png")}, "image", "not a readable image"),
             ({"image": ("b.png", bomb, "image/png")}, "image", "pixels"),
             ({"image": ("t.png", init[:len(init) // 2], "image/png")}, "image", "not a readable image"),
             ({"image": ("g.gif", gif.getvalue(), "image/gif")}, "image", "GIF"),
             ({"image": init, "mask": small.getvalue()}, "mask", "the image's size"),
             ({"image": init, "mask": init}, "mask", "alpha"),
             ({"image": [init, init]}, "image", "one image"),
             ({"image": init, "quality": "high"}, "quality", "not supported"),
             ({"image": init, "n": 0}, "n", "images"),
             ({"image": init, "extra_body": {"strength": 0}}, "strength", "strength")]
    client = server.client()
    for kwargs, param, words in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.edit(prompt=EDIT, **kwargs)
        error = caught.value.body
        assert (error["param"], error["type"]) == (param, "invalid_request_error") and words in error["message"], error
    status, body, _ = server.call("POST", "/v1/images/edits", {"prompt": EDIT, "image": "aGk="})
    assert status == 400 and body["error"]["code"] == "invalid_form"
    status, body = post_form(server, {"prompt": EDIT}, [("image", init)], cut=30)
    assert status == 400 and body["error"]["code"] == "invalid_form", body
    status, body = post_form(server, {"prompt": EDIT, "image": "aGk="}, [])
    assert status == 400 and body["error"]["param"] == "image"
    status, body = post_form(server, {"prompt": EDIT}, [("image", init), ("markup", init)])
    assert status == 400 and body["error"]["param"] == "markup"
    status, body = post_form(server, {"prompt": EDIT}, [("image", b"\0" * (3 << 20))])  # --max-body-mb 2
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert server.alive()
    [private] = server.private.glob("diffcli-serve-*")
    assert list(private.iterdir()) == []  # every upload was removed once its request ended
    assert sorted(path.name for path in server.cwd.iterdir()) == ["tmp"]  # and nothing was written elsewhere


@slow
def test_a1111_img2img_with_a_mask_equals_cli_inpaint(server, files, tmp_path):
    expected = cli_images(tmp_path, "cli", "inpaint", str(files["init"]), str(files["inverse"]), EDIT, "--seed", "5",
                          "-n", "2", "--strength", "0.9", "--mask-blur", "1", "--invert-mask")
    encoded = {name: base64.b64encode(files[name].read_bytes()).decode() for name in ("init", "inverse")}
    body = {"prompt": EDIT, "init_images": [encoded["init"]], "mask": encoded["inverse"], "seed": 5, "batch_size": 2,
            "denoising_strength": 0.9, "mask_blur": 1, "inpainting_mask_invert": 1, "inpaint_full_res": False,
            "inpaint_full_res_padding": 32, "inpainting_fill": 1, "mask_blur_x": 4, "mask_blur_y": 4}
    status, answer, _ = server.call("POST", "/sdapi/v1/img2img", body)
    assert status == 200, answer
    assert "mask" not in answer["parameters"] and "init_images" not in answer["parameters"]
    for image, path in zip(answer["images"], expected):
        assert np.abs(pixels(base64.b64decode(image)) - pixels(path.read_bytes())).max() <= 2
    assert "Mask blur: 1" in json.loads(answer["info"])["infotexts"][0]
    for change, param in [({"mask": "not base64!!"}, "mask"), ({"mask_blur": None, "mask_blur_x": 2}, "mask_blur_y"),
                          ({"inpainting_mask_invert": 3}, "inpainting_mask_invert")]:
        status, error, _ = server.call("POST", "/sdapi/v1/img2img", {**body, **change})
        assert status == 422 and error["error"]["param"] == param, error
    status, error, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": EDIT, "mask": encoded["inverse"]})
    assert status == 422 and error["error"]["param"] == "mask"


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    from diffcli.plan.items import PromptLine
    from diffcli.plan.presets import resolve
    from diffcli.run.commands import plan_run
    from diffcli.serve.door import Door
    from diffcli.serve.limits import Limits

    preset = resolve("digits-text", "digits-text", None, {"steps": 4}).preset
    facts = plan_run(preset, "txt2img", [PromptLine(prompt="x")]).facts
    return Door(preset, facts, Limits(), ["ddim"], tmp_path_factory.mktemp("uploads"))


def png(array: np.ndarray, mode: str) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a1111_mask_fields_map_to_the_cli_keys_and_equal_edits_share_a_batch(door):
    from diffcli.serve.a1111_api import wanted_of
    from diffcli.serve.errors import RequestError
    from diffcli.serve.models import A1111Img2Img, parse

    white = np.zeros((16, 16), np.uint8)
    white[:, 8:] = 255
    base = {"prompt": EDIT, "init_images": [png(np.full((16, 16, 3), 90, np.uint8), "RGB")], "mask": png(white, "L"),
            "seed": 1}
    service = types.SimpleNamespace(door=door)
    cases = [({}, (0, None, False)), ({"inpaint_full_res": True, "inpaint_full_res_padding": 2}, (0, 2, False)),
             ({"inpaint_full_res": 1}, (0, 0, False)),
             ({"inpaint_full_res": False, "inpaint_full_res_padding": 2}, (0, None, False)),
             ({"mask_blur_x": 3, "mask_blur_y": 3, "inpainting_mask_invert": 1}, (3, None, True)),
             ({"mask_blur": 2, "mask_blur_x": 4, "mask_blur_y": 5}, (2, None, False))]
    made = []
    for fields, (blur, padding, invert) in cases:
        body = A1111Img2Img.model_validate({**base, **fields})
        if padding is not None:  # "Only masked" crops to RGB: this greyscale model refuses it, naming the field
            with pytest.raises(RequestError, match='inpaint_full_res: "Only masked"') as refused:
                wanted_of(body, service)
            assert refused.value.param == "inpaint_full_res" and "--" not in refused.value.message
            continue
        wanted = wanted_of(body, service)
        assert "padding_mask_crop" not in wanted.values or wanted.values["padding_mask_crop"][1] is None, fields
        items = door.items(wanted)
        spec = items[0].inpaint
        assert (spec.mask_blur, spec.padding_mask_crop, spec.invert_mask) == (blur, padding, invert), fields
        made.append(items)
    for fill in (0, 1, 2, 3):  # A1111's four fills are accepted (diffusers starts from the noised image) ...
        made.append(door.items(wanted_of(A1111Img2Img.model_validate({**base, "inpainting_fill": fill}), service)))
    for fill in (7, -1):  # ... any other number is refused, naming the field
        with pytest.raises(RequestError, match="inpainting_fill: expected 0, 1, 2 or 3") as refused:
            wanted_of(A1111Img2Img.model_validate({**base, "inpainting_fill": fill}), service)
        assert refused.value.param == "inpainting_fill"
    with pytest.raises(RequestError) as refused:  # and a boolean by the strict model
        parse(A1111Img2Img, {**base, "inpainting_fill": True})
    assert refused.value.param == "inpainting_fill"
    again = door.items(wanted_of(A1111Img2Img.model_validate({**base, "seed": 7}), service))
    assert again[0].batch_key() == made[0][0].batch_key()  # the same uploads are the same files: one batch
    assert len(list(door.init_dir.iterdir())) == 2
    for items in made + [again]:
        door.release(items)
    assert list(door.init_dir.iterdir()) == []  # removed once the last request using them is done


class FakeRequest:
    def __init__(self, body: bytes, kind: str) -> None:
        self.headers = {"content-type": kind}
        self.body = body

    async def stream(self):
        for start in range(0, len(self.body), 7):  # small chunks: parts cross chunk borders
            yield self.body[start:start + 7]


def read(body: bytes, kind: str, names=frozenset({"image", "mask"})):
    from diffcli.serve.uploads import read_form

    return asyncio.run(read_form(FakeRequest(body, kind), names))


def test_the_form_reader_keeps_everything_in_memory_and_refuses_bad_forms(caplog):
    from diffcli.serve.errors import RequestError

    form = read(*multipart({"prompt": "a digit ✓", "n": "2"}, [("image", b"\x89PNG\r\n--x"), ("mask", b"m"),
                                                             ("image", b"2")]))
    assert form.fields == {"prompt": "a digit ✓", "n": "2"}
    assert form.files == {"image": [b"\x89PNG\r\n--x", b"2"], "mask": [b"m"]}
    body, kind = multipart({"prompt": "a"}, [])
    refusals = [(multipart({"prompt": "a"}, [("image", b"x")], cut=10), None, "cut short"),
                (multipart([(f"f{i}", "1") for i in range(65)], []), None, "parts"),
                (multipart({}, [("other", b"x")]), "other", "not a file field"),
                (multipart([("n", "1"), ("n", "2")], []), "n", "more than once"),
                ((body.replace(b"\r\na\r\n", b"\r\n\xff\r\n"), kind), "prompt", "UTF-8"),
                ((body, "application/json"), None, "multipart/form-data")]
    for (bad, bad_kind), param, words in refusals:
        with pytest.raises(RequestError) as caught:
            read(bad, bad_kind)
        assert caught.value.param == param and words in caught.value.message, caught.value.message
    for malformed in (body.replace(b"\r\n", b"\n", 1), b"garbage" + body):
        with pytest.raises(RequestError, match="not valid multipart"):
            read(malformed, kind)
    assert caplog.records == []  # python-multipart's own warnings reach no handler (Python printed them on stderr)
