"""Regression tests for the redesign: each bug the review found, and the contracts the new shapes promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from diffcli.cli.app import app
from tests.conftest import REPO, run_cli
from tests.hostile_runner import start

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_ldm(tmp_path_factory) -> Path:
    """An LDMPipeline (unet + vqvae): 8x8 latents decoded to 16x16 pixels."""
    import torch
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    vqvae = VQModel(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                    num_vq_embeddings=16, layers_per_block=1)
    folder = tmp_path_factory.mktemp("models") / "tiny-ldm"
    LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


def test_bug1_latent_pipeline_is_decoded_like_ldm_pipeline(tiny_ldm, tmp_path):
    import torch
    from diffusers import LDMPipeline

    result = invoke("unconditional", "--model", str(tiny_ldm), "--steps", "3", "-n", "2", "--seed", "5",
                    "-o", str(tmp_path / "o"), "--json", "-q", "--no-grid")
    assert result.exit_code == 0, result.output
    images = json.loads(result.stdout)["images"]
    pipe = LDMPipeline.from_pretrained(tiny_ldm)
    for entry in images:
        ours = np.asarray(Image.open(entry["path"]).convert("RGB"), dtype=np.int16)
        assert ours.shape == (16, 16, 3)  # decoded pixels, not the 8x8 latents
        theirs = pipe(generator=torch.Generator("cpu").manual_seed(entry["seed"]), num_inference_steps=3,
                      output_type="np").images[0]
        assert np.abs(ours - np.round(theirs * 255).astype(np.int16)).max() <= 2


def test_bug2_and_3_replay_names_from_the_item_and_model_field_names_the_model(tiny_ddpm, tmp_path):
    first = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "--seed", "7", "-o",
                   str(tmp_path / "a"), "--json", "-q")
    assert first.exit_code == 0, first.output
    image = Path(json.loads(first.stdout)["images"][0]["path"])
    parameters = Image.open(image).info["parameters"]
    assert f"Model: {tiny_ddpm.name}" in parameters and "digits" not in parameters
    again = invoke("replay", str(image), "--set", "seed=99", "-o", str(tmp_path / "r"), "--json", "-q")
    assert again.exit_code == 0, again.output
    replayed = json.loads(again.stdout)["images"][0]
    assert Path(replayed["path"]).name == "0000-s99.png"
    record = json.loads(Image.open(replayed["path"]).info["diffcli"])
    assert record["preset"]["seed"] == 99


def test_bug4_set_model_resolves_like_the_model_flag(tiny_ddpm, tiny_sd, tmp_path):
    by_flag = invoke("unconditional", "--model", str(tiny_ddpm), "-o", str(tmp_path / "f"), "--json", "-q",
                     "--steps", "2")
    by_set = invoke("unconditional", "--set", f"model={tiny_ddpm}", "-o", str(tmp_path / "s"), "--json", "-q",
                    "--steps", "2")
    assert by_flag.exit_code == by_set.exit_code == 0
    strip = lambda doc: {k: v for k, v in doc["preset"].items() if k not in ("output",)}  # noqa: E731
    assert strip(json.loads(by_flag.stdout)) == strip(json.loads(by_set.stdout))
    trace = invoke("denoise-trace", "--set", f"model={tiny_sd}", "--prompt", "a cat", "--steps", "2",
                   "-o", str(tmp_path / "t"), "--json", "-q")
    assert trace.exit_code == 0, trace.output


def test_bug5_resume_after_a_crash_mid_image_with_frames(tiny_ddpm, tmp_path):
    out = tmp_path / "o"
    args = ("unconditional", "--model", str(tiny_ddpm), "--steps", "4", "--every", "2", "-n", "3", "-o", str(out),
            "-q", "--json")
    assert invoke(*args).exit_code == 0
    (out / "0001-s1.png").unlink()  # as if the run died after image 1's frames, before its final image
    again = invoke(*args, "--skip-existing")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    made = [Path(e["path"]).name for e in doc["images"] if not e.get("existing")]
    assert made == ["0001-s1.png"]
    assert sorted(Path(f["path"]).name for f in doc["frames"]) == ["0001-s1-step0002-t0500-xt.png",
                                                                   "0001-s1-step0004-t0000-xt.png"]


def test_bug6_skip_is_honoured_at_publish_time(tmp_path):
    from diffcli.sinks.folder import OutputFolder, png_writer

    folder = OutputFolder(tmp_path, "unconditional", "skip")
    assert not folder.is_done("0000-s0.png")
    Image.new("L", (4, 4)).save(tmp_path / "0000-s0.png")  # another process published it meanwhile
    path, existed = folder.publish("0000-s0.png", png_writer(Image.new("L", (4, 4), 255), None), final=True)
    assert existed and np.asarray(Image.open(path)).max() == 0  # kept, not replaced, no error


@pytest.mark.slow
def test_bug6_two_concurrent_skip_runs_both_succeed(tiny_ddpm, tmp_path):
    args = ["unconditional", "--model", str(tiny_ddpm), "--steps", "3", "-n", "4", "-o", str(tmp_path / "o"),
            "--skip-existing", "-q"]
    procs = [start(args, tmp_path) for _ in range(2)]  # side by side, each forked from the pre-imported server
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    made = sorted(p.name for p in (tmp_path / "o").glob("*.png"))
    assert made == [f"{i:04d}-s{i}.png" for i in range(4)] + ["grid-0000-s0.png"]


def test_bug7_json_document_on_interrupt_during_load_and_no_stale_report(tiny_ddpm, tmp_path, monkeypatch):
    import diffcli.run.pipelines as pipelines

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipelines, "load_pipeline", interrupted)
    result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-o", str(tmp_path / "o"), "--json")
    assert result.exit_code == 130
    doc = json.loads(result.stdout)
    assert doc["status"] == "interrupted" and doc["images"] == []
    usage = invoke("unconditional", "--steps", "0", "--json")
    assert usage.exit_code == 2 and "images" not in json.loads(usage.stdout)  # nothing left over from the last run


def test_bug7_only_rank_zero_prints(monkeypatch, capsys):
    from diffcli.cli.emit import Emitter

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    Emitter(as_json=True).error("boom", 2, {"images": []})
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    Emitter(as_json=True).error("boom", 2, {"images": []})
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["exit_code"] == 2 and captured.err == "Error: boom\n"


def test_bug8_frames_take_the_items_own_size(tiny_sd, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a cat", "width": 24, "height": 16}\n')
    result = invoke("txt2img", "--prompts-file", str(prompts), "--model", str(tiny_sd), "--steps", "2",
                    "--every", "1", "-o", str(tmp_path / "o"), "--json", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["frames"] and all(Image.open(f["path"]).size == (24, 16) for f in doc["frames"])


def test_bug10_no_placeholder_under_the_final_name_without_links(tmp_path, monkeypatch):
    import errno

    from diffcli.sinks import folder as folder_module

    def no_links(*_a):
        raise OSError(errno.EPERM, "links not supported")

    def interrupted_replace(*_a):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_module.os, "link", no_links)
    monkeypatch.setattr(folder_module.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        folder_module.write_atomic(tmp_path / "x.png", lambda handle: handle.write(b"png"), replace=False)
    assert not (tmp_path / "x.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # temp and lock files removed too


def test_bug11_bare_cuda_maps_to_the_ranks_gpu(monkeypatch):
    from types import SimpleNamespace

    import diffcli.run.ranks as ranks

    fake = SimpleNamespace(state=SimpleNamespace(device=SimpleNamespace(type="cuda", __str__=None)))
    fake.state.device = type("D", (), {"type": "cuda", "__str__": lambda self: "cuda:1"})()
    monkeypatch.setattr(ranks, "current", lambda: fake)
    assert ranks.device_for_rank("cuda") == "cuda:1"
    assert ranks.device_for_rank("auto") == "cuda:1"
    assert ranks.device_for_rank("cuda:0") == "cuda:0"


def test_bug12_attention_backend_is_refused_on_unet_pipelines(tiny_sd, tmp_path):
    result = invoke("txt2img", "a cat", "--model", str(tiny_sd), "--set", "attention_backend=native", "--steps", "2",
                    "-o", str(tmp_path / "o"), "-q")
    assert result.exit_code == 2 and "only transformer pipelines" in result.stderr


def test_bug12_arguments_a_pipeline_does_not_take_are_named():
    from diffcli.errors import UsageError
    from diffcli.run.sampling import sample_txt2img

    class NoNegative:
        scheduler = type("S", (), {"step": lambda *a, **k: None, "timesteps": [], "order": 1})()

        def __call__(self, prompt, num_inference_steps, output_type, generator=None):
            raise AssertionError("must not run")

    with pytest.raises(UsageError, match="negative_prompt"):
        sample_txt2img(NoNegative(), {"prompt": ["a"], "negative_prompt": ["b"]}, 2, None)


def test_json_on_click_usage_errors():
    for args in (["txt2img", "--bogus", "--json"], ["nosuch", "--json"], ["txt2img", "x", "--steps", "abc", "--json"]):
        result = run_cli(*args)
        assert result.returncode == 2, args
        assert json.loads(result.stdout)["status"] == "error"
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


def test_numbered_output_folders_and_no_empty_folder_on_failure(tiny_ddpm, tmp_path):
    for expected in ("0001", "0002"):
        result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-q", "--json")
        assert result.exit_code == 0
        assert Path(json.loads(result.stdout)["images"][0]["path"]).parent.name == expected
    failed = invoke("unconditional", "--model", str(tmp_path / "missing"), "-q")
    assert failed.exit_code == 3
    assert sorted(p.name for p in Path("outputs/unconditional").iterdir()) == ["0001", "0002"]


def test_all_done_items_do_not_load_the_model(tiny_ddpm, tmp_path, monkeypatch):
    args = ("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "-o", str(tmp_path / "o"), "-q")
    assert invoke(*args).exit_code == 0
    import diffcli.run.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("loaded the model"))
    again = invoke(*args, "--skip-existing", "--json")
    assert again.exit_code == 0
    assert [e.get("existing") for e in json.loads(again.stdout)["images"]] == [True, True]


def test_stale_temp_files_of_dead_writers_are_removed(tiny_ddpm, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".diffcli-tmp-{dead.stdout.strip()}-abcd-0000-s0.png"
    stale.write_bytes(b"")
    mine = out / f".diffcli-tmp-{os.getpid()}-abcd-0009-s9.png"
    mine.write_bytes(b"")
    assert invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-o", str(out), "-q").exit_code == 0
    assert not stale.exists() and mine.exists()


def test_bug9_train_refuses_a_non_empty_folder_and_replaces_it_only_with_overwrite(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ("train", "digits", "-o", str(out), "--steps", "2", "--subset", "64", "--batch-size", "8", "-q")
    refused = invoke(*args)
    assert refused.exit_code == 4 and "not empty" in refused.stderr
    assert (out / "keep.txt").read_text() == "mine"
    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert (out / "model_index.json").is_file() and not (out / "keep.txt").exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".model-checkpoints", "model"]  # checkpoints kept for --resume; no temp or old folder


def test_bug11_resume_loads_rng_state_on_the_cpu(monkeypatch, tmp_path):
    import torch

    import diffcli.builtin.training as training

    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    base = ("train", "digits", "-o", str(tmp_path / "m"), "--steps", "2", "--subset", "64", "--batch-size", "8",
            "--checkpoint-every", "1", "-q")
    assert invoke(*base).exit_code == 0
    resumed = invoke(*base[:-1], "--steps", "3", "--resume", "--overwrite", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert seen and set(seen) == {"cpu"}


def test_threads_adapt_to_other_running_tasks(monkeypatch):
    from diffcli.run import threads

    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DIFFCLI_BUSY_CPUS", "DIFFCLI_OMP_DEFAULTS", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(name, "")  # recorded, so what prepare_openmp() sets is undone after the test
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    threads.prepare_openmp()
    assert "OMP_WAIT_POLICY" not in os.environ and threads.default_threads() == 4  # idle: every core, spinning
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 1)
    threads.prepare_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and threads.default_threads() == 3
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.default_threads() == 2  # the user's choice wins
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 5)
    threads.prepare_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_other_running_tasks_counts_a_busy_process():
    from diffcli.run.threads import other_running_tasks

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert other_running_tasks() >= 1
    finally:
        busy.kill()
        busy.wait()


def test_thread_governor_gives_a_mid_run_neighbour_its_core(monkeypatch):
    """The default count drops to the free cores when others start running, and comes back after quiet checks."""
    import torch

    from diffcli.run import threads

    monkeypatch.delenv("DIFFCLI_OMP_DEFAULTS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    running = [0]
    monkeypatch.setattr(threads, "others_now", lambda: running[0])
    before = torch.get_num_threads()
    try:
        governor = threads.ThreadGovernor(2, adaptive=True, every_s=0, quiet_checks=3)
        governor.check()
        assert governor.current == 2
        running[0] = 1  # a neighbour starts mid-run
        governor.check()
        assert governor.current == 2  # once may be a passing task
        governor.check()
        assert governor.current == 1 and torch.get_num_threads() == 1
        running[0] = 0
        governor.check()
        governor.check()
        assert governor.current == 1  # not yet: two quiet checks
        governor.check()
        assert governor.current == 2 and governor.lowest == 1
        fixed = threads.ThreadGovernor(2, adaptive=False, every_s=0)
        running[0] = 1
        fixed.check()
        fixed.check()
        assert fixed.current == 2  # --threads / OMP_NUM_THREADS: the user's count stays
    finally:
        torch.set_num_threads(before)


def test_others_now_excludes_this_process_threads():
    from diffcli.run.threads import others_now, own_running_threads

    assert own_running_threads() >= 1
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert max(others_now() for _ in range(5)) >= 1
    finally:
        busy.kill()
        busy.wait()


def test_builtin_models_by_name_and_replayed_on_another_install(tmp_path):
    """`--model digits-text` is the built-in model (not a hub id); metadata records the name, and an image whose
    recorded install path no longer exists replays on this install's copy, pixel for pixel."""
    import json as json_module

    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    made = invoke("txt2img", "a handwritten digit 3", "--model", "digits-text", "--steps", "4", "-o",
                  str(tmp_path / "a"), "--json", "--quiet")
    assert made.exit_code == 0, made.output
    path = json_module.loads(made.stdout)["images"][0]["path"]
    info = Image.open(path).info
    record = json_module.loads(info["diffcli"])
    assert record["preset"]["model"] == "digits-text"
    record["preset"]["model"] = "/gone/old-install/site-packages/diffcli/models/digits-text"
    moved = tmp_path / "moved.png"
    text = PngInfo()
    text.add_text("parameters", info["parameters"])
    text.add_text("diffcli", json_module.dumps(record))
    Image.open(path).save(moved, pnginfo=text)
    for image, out in ((path, "r1"), (moved, "r2")):
        replayed = invoke("replay", str(image), "-o", str(tmp_path / out), "--json", "--quiet")
        assert replayed.exit_code == 0, replayed.output
        again = json_module.loads(replayed.stdout)["images"][0]["path"]
        assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(path)))
