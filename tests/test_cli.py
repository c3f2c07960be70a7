"""The CLI through Typer's runner and as real subprocesses: exit codes, stdout/stderr split, no tracebacks."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from diffcli.cli.app import app
from tests.conftest import REPO, run_cli
from tests.hostile_runner import start

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "120", "NO_COLOR": "1"})


def test_presets_list_and_show():
    result = invoke("presets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"digits", "digits-text", "ddpm-church-256"} <= set(names)
    shown = invoke("presets", "show", "ddpm-church-256")
    assert shown.exit_code == 0 and "model: google/ddpm-ema-church-256" in shown.stdout


def test_unconditional_json_schema(tiny_ddpm, tmp_path):
    result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "6", "-n", "2", "--seed", "3",
                    "--every", "3", "-o", str(tmp_path / "o"), "--json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "ok"
    assert [(i["seed"], os.path.basename(i["path"])) for i in doc["images"]] == [(3, "0000-s3.png"), (4, "0001-s4.png")]
    assert {(f["image_index"], f["step"]) for f in doc["frames"]} == {(0, 3), (0, 6), (1, 3), (1, 6)}
    assert all({"path", "step", "timestep", "image_index", "kind"} <= set(f) for f in doc["frames"])
    assert doc["preset"]["steps"] == 6 and {"load_s", "generate_s", "total_s"} <= set(doc["timings"])
    assert doc["device"] == "cpu" and doc["dtype"] == "float32" and doc["threads"] >= 1


@pytest.mark.parametrize("args,code,message", [
    (["unconditional", "--preset", "nope-preset"], 2, "unknown preset 'nope-preset'"),
    (["unconditional", "--set", "stepz=4"], 2, "did you mean 'steps'"),
    (["unconditional", "--steps", "0"], 2, "--steps: expected an integer >= 1, got 0"),
    (["unconditional", "--num-images", "0"], 2, "--num-images: expected an integer >= 1, got 0"),
    (["unconditional", "-n", "0"], 2, "--num-images: expected an integer >= 1, got 0"),
    (["unconditional", "--set", "num_images=0"], 2, "--set: num_images: expected an integer >= 1, got 0"),
    (["unconditional", "--scheduler", "eulr"], 2, "unknown scheduler 'eulr'"),
    (["unconditional", "--model", "./no/such/folder"], 3, "model folder not found"),
    (["unconditional", "--model", "bad id!!"], 3, "is neither an existing local folder nor a valid hub id"),
    (["unconditional", "--model", "owner/na..me"], 3, "nor a valid hub id"),
    (["unconditional", "--model", "google/ddpm-cifar10-32", "--offline"], 3, "not in the local cache and diffcli is offline"),
    (["txt2img", "a", "--model", "owner/uncached", "--offline"], 3,  # every built-in model named, the ControlNet too
     "the built-in models work offline: --preset digits, digits-control, digits-flow, digits-text"),
    (["txt2img", "a cat", "--preset", "digits"], 3, "not a txt2img model"),
    (["unconditional", "--overwrite", "--skip-existing"], 2, "exclude each other"),
    (["txt2img"], 2, "no prompt"),
])
def test_user_mistakes_are_one_line_errors(args, code, message):
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    # one error line, last; before it at most the one-line note that a built-in default preset is in use
    assert lines[-1].startswith("Error: ") and message in lines[-1]
    assert all(line.startswith("Using the built-in preset '") for line in lines[:-1]) and len(lines) <= 2
    quiet = invoke(*args, "--quiet")
    assert quiet.exit_code == code and quiet.stderr.strip().splitlines() == [lines[-1]]


def test_missing_weights_and_sigterm_exit_code(tmp_path, tiny_ddpm):
    import shutil

    missing = tmp_path / "missing"
    shutil.copytree(tiny_ddpm, missing)
    (missing / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    result = invoke("unconditional", "--model", str(missing))
    assert result.exit_code == 3 and "no weights file" in result.stderr

    out = tmp_path / "o"
    proc = start(["unconditional", "--preset", "digits", "-n", "500", "-b", "1", "--steps", "20", "-o", str(out)],
                 tmp_path)  # a child process (forked from the tests' pre-imported server)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("0*.png")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "interrupted by SIGTERM" in stderr and "Traceback" not in stderr


def test_out_of_memory_message_names_the_levers():
    import torch

    from diffcli.cli.boundary import describe

    message, code = describe(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert code == 1 and message.startswith("not enough memory")
    assert "--batch-size" in message and "cpu_offload" in message and "vae_tiling" in message
    assert describe(MemoryError()) == (message, 1)
    other, code = describe(ValueError("bad"))
    assert code == 1 and other.startswith("internal error: ValueError: bad") and "memory" not in other


def test_prompts_file_unreadable():
    result = invoke("txt2img", "--prompts-file", "no-such-file.txt", "--preset", "digits-text")
    assert result.exit_code == 2 and "prompts file not found" in result.stderr
    os.mkdir("adir")
    result = invoke("txt2img", "--prompts-file", "adir", "--preset", "digits-text")
    assert result.exit_code == 2 and "adir: prompts file must be a regular file, not a folder" in result.stderr


def test_model_folder_problems(tmp_path, tiny_ddpm):
    (tmp_path / "empty").mkdir()
    result = invoke("unconditional", "--model", str(tmp_path / "empty"))
    assert result.exit_code == 3 and "no model_index.json" in result.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{oops")
    result = invoke("unconditional", "--model", str(bad))
    assert result.exit_code == 3 and "corrupt model_index.json" in result.stderr
    import shutil

    unknown = tmp_path / "unknown"
    shutil.copytree(tiny_ddpm, unknown)  # configs and weights in place: only the class is wrong
    (unknown / "model_index.json").write_text('{"_class_name": "NoSuchPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}')
    result = invoke("unconditional", "--model", str(unknown), "--steps", "2", "-o", str(tmp_path / "o"))
    assert result.exit_code == 3 and "unknown pipeline class 'NoSuchPipeline'" in result.stderr, result.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_truncated_weights_and_pickle_only(tmp_path, tiny_ddpm):
    import shutil

    truncated = tmp_path / "trunc"
    shutil.copytree(tiny_ddpm, truncated)
    weights = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = invoke("unconditional", "--model", str(truncated), "--steps", "2", "-o", str(tmp_path / "o"))
    assert result.exit_code == 3 and "Traceback" not in result.output, result.output

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_ddpm, pickled)
    state = load_file(pickled / "unet" / "diffusion_pytorch_model.safetensors")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, pickled / "unet" / "diffusion_pytorch_model.bin")
    result = invoke("unconditional", "--model", str(pickled), "--steps", "2", "-o", str(tmp_path / "o2"))
    assert result.exit_code == 3 and "--allow-pickle" in result.stderr, result.output
    result = invoke("unconditional", "--model", str(pickled), "--steps", "2", "-o", str(tmp_path / "o3"),
                    "--allow-pickle", "--quiet")
    assert result.exit_code == 0, result.output


def test_existing_output_refused_skipped_or_overwritten(tiny_ddpm, tmp_path):
    args = ["unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "-o", str(tmp_path / "o"), "--quiet"]
    assert invoke(*args).exit_code == 0
    first = (tmp_path / "o" / "0000-s0.png").read_bytes()
    refused = invoke(*args)
    assert refused.exit_code == 4 and "already exists" in refused.stderr
    skipped = invoke(*args, "-n", "3", "--json")
    assert skipped.exit_code == 4
    skipped = invoke(*args[:-1], "-n", "3", "--skip-existing", "--json", "--quiet")
    assert skipped.exit_code == 0, skipped.output
    doc = json.loads(skipped.stdout)
    # kept images are listed too, marked existing; `skipped` names them again
    assert [(os.path.basename(i["path"]), i["seed"], i.get("existing", False)) for i in doc["images"]] == [
        ("0000-s0.png", 0, True), ("0001-s1.png", 1, True), ("0002-s2.png", 2, False)]
    assert [os.path.basename(s["path"]) for s in doc["skipped"]] == ["0000-s0.png", "0001-s1.png"]
    assert doc["grid"] == str(tmp_path / "o" / "grid-0000-s0.png") and (tmp_path / "o" / "grid-0000-s0.png").is_file()
    assert (tmp_path / "o" / "0000-s0.png").read_bytes() == first
    assert invoke(*args, "--overwrite").exit_code == 0
    assert (tmp_path / "o" / "0000-s0.png").read_bytes() == first
    (tmp_path / "file").write_text("x")
    result = invoke("unconditional", "--model", str(tiny_ddpm), "-o", str(tmp_path / "file"))
    assert result.exit_code == 4 and "is a file" in result.stderr


def test_inspect_json_and_table(tiny_sd):
    result = invoke("inspect", str(tiny_sd), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["pipeline"] == "StableDiffusionPipeline" and info["task"] == "txt2img"
    names = {c["name"]: c for c in info["components"]}
    assert names["unet"]["class"] == "UNet2DConditionModel" and names["unet"]["parameters"] > 0
    assert "euler" in info["scheduler"]["compatible"] and info["scheduler"]["class"] == "PNDMScheduler"
    table = invoke("inspect", "digits")
    assert table.exit_code == 0 and "UNet2DModel" in table.stdout and "compatible schedulers" in table.stdout


def test_help_imports_neither_torch_nor_diffusers():
    code = ("import sys; from diffcli.cli.app import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); r2 = CliRunner().invoke(app, ['presets']); "
            "r3 = CliRunner().invoke(app, ['txt2img', '--help']); "
            "assert r.exit_code == r2.exit_code == r3.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_subprocess_run_and_help():
    help_result = run_cli("--help")
    assert help_result.returncode == 0 and "unconditional" in help_result.stdout
    result = run_cli("unconditional", "--preset", "digits", "-n", "2", "--steps", "3", "-o", "o", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert len(doc["images"]) == 2 and "Traceback" not in result.stderr


def test_sigint_keeps_finished_images_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "o"
    proc = start(["unconditional", "--preset", "digits", "-n", "500", "-b", "1", "--steps", "20", "--every", "5",
                  "-o", str(out), "--json"], tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("0*.png"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    doc = json.loads(stdout)
    assert doc["status"] == "interrupted" and len(doc["images"]) >= 2
    from PIL import Image

    for entry in doc["images"] + doc["frames"]:
        Image.open(entry["path"]).verify()
    assert len(doc["frames"]) >= 4 * len(doc["images"])
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".diffcli-tmp-")]
    assert not leftovers


def test_default_output_folders_are_numbered_per_run(tmp_path):
    args = ["unconditional", "-n", "2", "--steps", "2", "--json"]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "Using the built-in preset 'digits'" not in first.stderr  # --json: stderr stays free of narration
    docs = [json.loads(first.stdout), json.loads(second.stdout)]
    assert [doc["output"] for doc in docs] == [os.path.join("outputs", "unconditional", "0001"),
                                               os.path.join("outputs", "unconditional", "0002")]
    for doc in docs:
        assert [i["path"] for i in doc["images"]] == [os.path.join(doc["output"], "0000-s0.png"),
                                                      os.path.join(doc["output"], "0001-s1.png")]
        assert doc["grid"] == os.path.join(doc["output"], "grid-0000-s0.png") and os.path.isfile(doc["grid"])
    assert (tmp_path / "outputs/unconditional/0001/0000-s0.png").read_bytes() == \
        (tmp_path / "outputs/unconditional/0002/0000-s0.png").read_bytes()
    human = invoke("txt2img", "seven", "-n", "1", "--steps", "2", "--no-grid")
    assert human.exit_code == 0, human.output
    assert human.stdout.splitlines() == [os.path.join("outputs", "txt2img", "0001", "0000-s0-seven.png")]
    assert "Using the built-in preset 'digits-text'" in human.stderr
    assert "wrote to " + os.path.join("outputs", "txt2img", "0001") in human.stderr


@pytest.mark.parametrize("switch", [["--no-grid"], ["--set", "grid=false"]])
def test_grid_can_be_turned_off(tiny_ddpm, tmp_path, switch):
    args = ["unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "--json", "--quiet"]
    off = invoke(*args, "-o", str(tmp_path / "off"), *switch)
    assert off.exit_code == 0, off.output
    assert json.loads(off.stdout)["grid"] is None and not list((tmp_path / "off").glob("grid*"))
    on = invoke(*args, "-o", str(tmp_path / "on"), "--grid", *(["--set", "grid=false"] if switch[0] == "--set" else []))
    assert on.exit_code == 0, on.output  # the flag beats --set
    assert json.loads(on.stdout)["grid"] == str(tmp_path / "on" / "grid-0000-s0.png")


def test_runs_sharing_a_folder_keep_their_own_grids(tmp_path):
    """A batch of prompts into one folder: each run's grid is named by its first image and never replaced
    by another run's; a grid that is there already follows the output policy like an image."""
    out = str(tmp_path / "o")
    args = ["--preset", "digits-text", "--steps", "2", "-n", "2", "-o", out, "--json", "--quiet"]
    seven, three = (invoke("txt2img", prompt, *args) for prompt in ("seven", "three"))
    assert seven.exit_code == 0 and three.exit_code == 0, three.output
    grids = [json.loads(r.stdout)["grid"] for r in (seven, three)]
    assert [os.path.basename(g) for g in grids] == ["grid-0000-s0-seven.png", "grid-0000-s0-three.png"]
    assert all(os.path.isfile(g) for g in grids)
    for name in ("0000-s0-seven.png", "0000-s1-seven.png"):
        os.remove(os.path.join(out, name))
    before = open(grids[0], "rb").read()
    again = invoke("txt2img", "seven", *args)
    assert again.exit_code == 4 and "grid-0000-s0-seven.png already exists" in again.stderr
    assert not os.path.exists(os.path.join(out, "0000-s0-seven.png")) and open(grids[0], "rb").read() == before
    kept = invoke("txt2img", "seven", *args, "--skip-existing")  # the run's overview is rebuilt with the run
    assert kept.exit_code == 0 and json.loads(kept.stdout)["grid"] == grids[0]


@pytest.mark.parametrize("args, said", [
    (["inpaint", "a.png", "m.png", "--hires", "2"], "No such option for inpaint: --hires (txt2img takes it) "
                                                     "(see diffcli inpaint --help)"),
    (["txt2img", "--stpes", "3"], "No such option for txt2img: --stpes (did you mean --steps?)"),
    (["txt2img", "--guidance", "3"], "(did you mean --guidance-scale?)"),
    (["presets", "show", "--hires", "2"], "No such option for presets show: --hires (txt2img takes it)"),
    (["--bogus"], "No such option: --bogus (see diffcli --help)"),
])
def test_an_unknown_option_names_close_spellings_and_the_commands_that_take_it(args, said):
    """Not click's "Possible options" (any option sharing the `--`: --hires suggested --threads and --preset)."""
    result = run_cli(*args, "--json")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("Error: ") and said in line, line
    assert "Possible options" not in line
    assert json.loads(result.stdout)["error"]["message"] == line[len("Error: "):]
