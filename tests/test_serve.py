"""`diffcli serve`: the real server as a subprocess on 127.0.0.1, driven by the official `openai` client and by
plain HTTP (urllib) for the A1111 routes. One server for the module (digits-text, 4 steps); the last test stops it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, require_dev_extra, run_cli
from tests.serve_server import (KEY, LONG_STEPS, PROMPT, Server, interrupt_and_wait, long_request, pixels, raw_http,
                                text_chunks, wait_for_progress)

pytestmark = [pytest.mark.xdist_group("serve"), pytest.mark.slow]
require_dev_extra("fastapi")
require_dev_extra("uvicorn")
openai = require_dev_extra("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    started = Server(folder, "--max-batch", "4", "--max-queue", "8", "--max-steps", "1000", "--max-body-mb", "1")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait(10)


def test_help_imports_neither_fastapi_nor_uvicorn():
    code = ("import sys\nsys.argv = ['diffcli', '--help']\nfrom diffcli.cli.app import main\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') "
            "if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert "serve" in done.stdout


def test_no_key_on_a_public_address_is_refused_in_one_line():
    env = {k: v for k, v in os.environ.items() if k != "DIFFCLI_API_KEY"}
    done = run_cli("serve", "--host", "0.0.0.0", "--port", "0", env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "without an API key" in done.stderr and "Traceback" not in done.stderr


def test_openai_client_matches_the_cli_pixel_for_pixel_while_other_work_runs(server, tmp_path):
    cli = run_cli("txt2img", PROMPT, "--preset", "digits-text", "--steps", "4", "--seed", "5", "-n", "2",
                  "-o", str(tmp_path / "cli"))
    assert cli.returncode == 0, cli.stderr
    expected = [(tmp_path / "cli" / f"0000-s{seed}-a-handwritten-digit-3.png").read_bytes() for seed in (5, 6)]
    results: dict[str, object] = {}

    def ours() -> None:
        results["ours"] = server.client().images.generate(prompt=PROMPT, n=2, extra_body={"seed": 5})

    def other() -> None:  # another request at the same time: gathered into the same batch
        results["other"] = server.client().images.generate(prompt="a handwritten digit 8", n=3,
                                                           extra_body={"seed": 77})

    threads = [threading.Thread(target=ours), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    response = results["ours"]
    assert [entry.seed for entry in response.data] == [5, 6]
    assert [entry.revised_prompt for entry in response.data] == [PROMPT, PROMPT]
    assert len(results["other"].data) == 3
    for entry, cli_png in zip(response.data, expected):
        png = base64.b64decode(entry.b64_json)
        assert np.abs(pixels(png) - pixels(cli_png)).max() <= 2
        assert text_chunks(png) == text_chunks(cli_png)  # the same A1111 and diffcli metadata as the CLI's


def test_a1111_txt2img_seeds_metadata_and_sampler_names(server):
    body = {"prompt": PROMPT, "seed": 11, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a",
            "scheduler": "Automatic", "cfg_scale": 5, "width": 16, "height": 16,
            # what real clients send at their defaults: ignored
            "enable_hr": False, "restore_faces": False, "script_args": [], "alwayson_scripts": {}, "subseed": -1,
            "subseed_strength": 0, "hr_upscaler": "Latent", "do_not_save_grid": False, "override_settings": {}}
    status, answer, _ = server.call("POST", "/sdapi/v1/txt2img", body)
    assert status == 200, answer
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [11, 12, 13, 14] and info["seed"] == 11
    assert info["sampler_name"] == "Euler a"
    assert len(answer["images"]) == 4
    for seed, image, infotext in zip(info["all_seeds"], answer["images"], info["infotexts"]):
        chunks = text_chunks(base64.b64decode(image))
        assert chunks["parameters"] == infotext
        assert f"Seed: {seed}," in infotext and "Sampler: Euler a" in infotext and "CFG scale: 5.0" in infotext
        record = json.loads(chunks["diffcli"])
        assert record["preset"]["seed"] == seed and record["preset"]["scheduler"] == "euler-a"
    status, random, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "seed": -1, "batch_size": 2})
    seeds = json.loads(random["info"])["all_seeds"]
    assert status == 200 and seeds[1] == seeds[0] + 1 and seeds[0] >= 0


def test_a1111_img2img_and_bad_base64(server):
    status, made, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "seed": 3})
    init = made["images"][0]
    body = {"prompt": "a handwritten digit 8", "init_images": [init], "denoising_strength": 0.5, "seed": 4,
            "steps": 4, "mask": None, "inpainting_fill": 0}
    status, answer, _ = server.call("POST", "/sdapi/v1/img2img", body)
    assert status == 200, answer
    chunks = text_chunks(base64.b64decode(answer["images"][0]))
    assert "Denoising strength: 0.5" in chunks["parameters"]
    assert json.loads(chunks["diffcli"])["init_image"]["sha256"] == hashlib.sha256(
        base64.b64decode(init)).hexdigest()
    for bad in ("not base64!!", base64.b64encode(b"not an image").decode()):
        status, error, _ = server.call("POST", "/sdapi/v1/img2img", {**body, "init_images": [bad]})
        assert status == 422 and error["error"]["param"] == "init_images[0]", error
    assert server.alive()


def test_openai_url_response_and_models(server):
    client = server.client()
    assert [model.id for model in client.models.list().data] == ["digits-text"]
    response = client.images.generate(prompt=PROMPT, response_format="url", extra_body={"seed": 5})
    url = response.data[0].url
    assert url.startswith(server.url + "/v1/files/")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=30) as got:
        assert got.headers["content-type"] == "image/png" and pixels(got.read()).shape == (16, 16)
    assert server.call("GET", "/v1/files/..%2F..%2Fetc%2Fpasswd")[0] == 404
    webp = client.images.generate(prompt=PROMPT, output_format="webp", extra_body={"seed": 5})
    assert Image.open(io.BytesIO(base64.b64decode(webp.data[0].b64_json))).format == "WEBP"


def test_refusals_are_one_json_body_and_the_server_lives_on(server):
    client = server.client()
    cases = [({"n": 1000}, "n"), ({"size": "4096x4096"}, "size"), ({"extra_body": {"steps": -3}}, "steps"),
             ({"size": "banana"}, "size"), ({"model": "dall-e-3"}, "model"), ({"extra_body": {"steps": 5000}}, "steps"),
             ({"extra_body": {"seed": "7"}}, "seed"), ({"extra_body": {"scheduler": "flow-euler"}}, "scheduler")]
    for kwargs, param in cases:
        with pytest.raises(openai.APIStatusError) as caught:
            client.images.generate(prompt=PROMPT, **kwargs)
        assert 400 <= caught.value.status_code < 500, kwargs
        assert caught.value.body["param"] == param, (kwargs, caught.value.body)
    status, body, _ = server.call("POST", "/v1/images/generations", raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "steps": -1})
    assert status == 422 and body["error"]["param"] == "steps" and "detail" in body
    status, body, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "enable_hr": True})
    assert status == 422 and body["error"]["param"] == "enable_hr"
    status, body, _ = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "sampler_name": "Restart"})
    assert status == 422 and "Euler a" in body["detail"]
    too_large = raw_http(server, b"POST /sdapi/v1/txt2img", {"Content-Length": str(2 << 20)}, b"")  # --max-body-mb 1
    assert too_large[0] == 413 and too_large[1]["error"]["code"] == "body_too_large"
    over = (1 << 20) + 10
    streamed = b"%x\r\n%s\r\n0\r\n\r\n" % (over, b" " * over)  # just over 1 MiB, chunked: no Content-Length
    status, body = raw_http(server, b"POST /v1/images/generations", {"Transfer-Encoding": "chunked"}, streamed)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert server.call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "other"})[0] == 405
    assert server.call("GET", "/no/such/route")[0] == 404
    status, body, headers = server.call("GET", "/v1/models", key=None)
    assert status == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
    assert server.call("GET", "/sdapi/v1/sd-models", key="wrong")[0] == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert server.alive()


def test_progress_during_a_long_request_then_interrupt(server):
    results: list = []
    thread = long_request(server, results, force_task_id="long-1")
    first = wait_for_progress(server, 2)
    assert 0 < first["progress"] < 1 and first["state"]["sampling_steps"] == LONG_STEPS
    assert first["state"]["job"] == "long-1" and first["eta_relative"] > 0
    status, task, _ = server.call("POST", "/internal/progress", {"id_task": "long-1"})
    assert status == 200 and task["active"] and not task["completed"]
    later = wait_for_progress(server, first["state"]["sampling_step"] + 1)
    assert later["progress"] >= first["progress"]
    for _ in range(100):  # the first call with skip_current_image=false asks the worker for previews
        preview = server.call("GET", "/sdapi/v1/progress?skip_current_image=false")[1]["current_image"]
        if preview:
            break
        time.sleep(0.05)
    assert pixels(base64.b64decode(preview)).shape[:2] == (16, 16)
    interrupted_at = time.monotonic()
    interrupt_and_wait(server, thread)
    assert time.monotonic() - interrupted_at < 10
    status, answer, _ = results[0]
    assert status == 200 and answer["images"] == [] and json.loads(answer["info"])["interrupted"] is True
    assert server.call("POST", "/internal/progress", {"id_task": "long-1"})[1]["completed"] is True
    assert server.alive()


def test_a_full_queue_answers_429_and_503_and_a_gone_client_is_dropped(server):
    results: list = []
    thread = long_request(server, results)
    wait_for_progress(server)
    # 8 images queued behind it (--max-queue 8), from a client that then goes away
    body = json.dumps({"prompt": PROMPT, "batch_size": 8, "steps": LONG_STEPS}).encode()
    gone = socket.create_connection(("127.0.0.1", server.port))
    gone.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                 b"\r\n\r\n" + body)
    for _ in range(200):
        if server.call("GET", "/sdapi/v1/progress")[1]["state"]["job_count"] == 2:
            break
        time.sleep(0.05)
    with pytest.raises(openai.RateLimitError) as caught:
        server.client().images.generate(prompt=PROMPT)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    status, body, headers = server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT})
    assert status == 503 and int(headers.get("retry-after", headers.get("Retry-After"))) >= 1
    gone.close()
    for _ in range(200):
        if server.call("GET", "/sdapi/v1/progress")[1]["state"]["job_count"] == 1:
            break
        time.sleep(0.05)
    assert server.call("GET", "/sdapi/v1/progress")[1]["state"]["job_count"] == 1  # its 8 images were dropped
    interrupt_and_wait(server, thread)
    assert server.call("POST", "/sdapi/v1/txt2img", {"prompt": PROMPT, "seed": 2})[0] == 200


def test_info_routes(server):
    status, samplers, _ = server.call("GET", "/sdapi/v1/samplers")
    names = {entry["name"] for entry in samplers}
    assert status == 200 and {"Euler a", "DDIM", "DPM++ 2M Karras"} <= names
    assert server.call("GET", "/sdapi/v1/sd-models")[1][0]["model_name"] == "digits-text"
    assert server.call("GET", "/sdapi/v1/options")[1]["sd_model_checkpoint"] == "digits-text"
    assert [entry["name"] for entry in server.call("GET", "/sdapi/v1/schedulers")[1]] == ["automatic", "karras"]


def test_sigterm_finishes_or_cuts_the_running_batch_exits_0_and_releases_the_port(server):
    """Last: stops the module's server."""
    results: list = []
    thread = long_request(server, results)
    wait_for_progress(server)
    stopped_at = time.monotonic()
    code = server.stop()
    assert code == 0
    assert time.monotonic() - stopped_at < 10
    thread.join(30)
    status, answer, _ = results[0]
    assert status == 200 and json.loads(answer["info"])["interrupted"] is True
    log = "".join(server.lines)
    assert "Traceback" not in log and "stopped" in log
    assert sum('"POST /sdapi/v1/txt2img"' in line for line in server.lines) >= 5  # one line per request
    assert any('"POST /v1/images/generations" 200 2 images (batches of' in line for line in server.lines)
    with socket.socket() as again:  # as any server binds (SO_REUSEADDR): fails while a process still listens there
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", server.port))
        again.listen()


@pytest.mark.parametrize("args, needle", [
    (["--preset", "digits-control"], "serve: controlnet is not a server setting"),
    (["--preset", "digits-text", "--set", "hires=2"], "serve: hires is not a server setting"),
])
def test_settings_the_server_cannot_apply_are_refused_at_start(args, needle):
    """A preset's ControlNet or hires pass would be ignored by every request: refused before anything loads."""
    from tests.test_cli import invoke

    result = invoke("serve", *args, "--port", "0")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {needle}"), lines
