"""`--vary` comparison grids: cells are ordinary images, identical to separate runs, plus labelled grids."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcli.plan.items import ModelFacts, PromptLine
from diffcli.plan.presets import Preset
from diffcli.plan.vary import expand, parse_vary
from diffcli.run.generate import batches
from tests.test_cli import invoke
from tests.test_distributed import launch


def run_json(*args):
    result = invoke(*args, "--json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pixels(path):
    return np.asarray(Image.open(path), dtype=int)


def by_cell(doc):
    return {tuple(sorted(entry["cell"].items())): entry for entry in doc["images"]}


def test_txt2img_cells_match_separate_runs(tiny_sd, tmp_path):
    doc = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--seed", "5", "-o", str(tmp_path / "v"),
                   "--vary", "scheduler=ddim,euler", "--vary", "steps=2,3", "-b", "4")
    cells = by_cell(doc)
    assert [e["cell"] for e in doc["images"]] == [{"scheduler": s, "steps": n} for s in ("ddim", "euler")
                                                  for n in (2, 3)]
    names = [Path(e["path"]).name for e in doc["images"]]
    assert names == ["0000-ddim-2-s5-a-cat.png", "0001-ddim-3-s5-a-cat.png", "0002-euler-2-s5-a-cat.png",
                     "0003-euler-3-s5-a-cat.png"]
    for scheduler, steps in (("euler", 3), ("ddim", 2)):
        plain = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--seed", "5", "--scheduler", scheduler,
                         "--steps", str(steps), "-o", str(tmp_path / f"{scheduler}{steps}"))
        cell = cells[(("scheduler", scheduler), ("steps", steps))]
        assert np.array_equal(pixels(cell["path"]), pixels(plain["images"][0]["path"])), (scheduler, steps)
        info = Image.open(cell["path"]).info
        assert f"Steps: {steps}, Sampler: {'Euler' if scheduler == 'euler' else 'DDIM'}," in info["parameters"]
        record = json.loads(info["diffcli"])["preset"]
        assert (record["scheduler"], record["steps"], record["seed"]) == (scheduler, steps, 5)
    # the cells differ: the scheduler really changed between batches
    assert not np.array_equal(pixels(cells[(("scheduler", "ddim"), ("steps", 3))]["path"]),
                              pixels(cells[(("scheduler", "euler"), ("steps", 3))]["path"]))


def test_unconditional_option_axis_matches_plain_run_and_replays(tiny_ddpm, tmp_path):
    doc = run_json("unconditional", "--model", str(tiny_ddpm), "--scheduler", "ddim", "--steps", "3", "-n", "2",
                   "--vary", "scheduler_options.timestep_spacing=leading,trailing", "-o", str(tmp_path / "v"))
    assert [Path(e["path"]).name for e in doc["images"]] == [
        "0000-leading-s0.png", "0001-leading-s1.png", "0002-trailing-s0.png", "0003-trailing-s1.png"]
    plain = run_json("unconditional", "--model", str(tiny_ddpm), "--scheduler", "ddim", "--steps", "3", "-n", "2",
                     "--set", "scheduler_options={timestep_spacing: trailing}", "-o", str(tmp_path / "p"))
    for cell, image in zip(doc["images"][2:], plain["images"]):
        assert np.array_equal(pixels(cell["path"]), pixels(image["path"]))
    assert not np.array_equal(pixels(doc["images"][0]["path"]), pixels(doc["images"][2]["path"]))
    record = json.loads(Image.open(doc["images"][3]["path"]).info["diffcli"])
    assert record["preset"]["scheduler_options"] == {"timestep_spacing": "trailing"}
    replayed = run_json("replay", doc["images"][3]["path"], "-o", str(tmp_path / "r"))
    assert np.array_equal(pixels(replayed["images"][0]["path"]), pixels(doc["images"][3]["path"]))
    grid = Image.open(doc["grid"])  # one --vary: one row of two cells of two images each
    assert json.loads(grid.info["diffcli-grid"]) == {
        "axes": [{"key": "scheduler_options.timestep_spacing", "values": ["leading", "trailing"]}]}
    assert grid.size[0] > 4 * 96 and 96 < grid.size[1] < 2 * 96


@pytest.mark.slow
def test_digits_text_grid_labels_and_cell(tmp_path):
    out = tmp_path / "g"
    doc = run_json("txt2img", "a handwritten digit 7", "--preset", "digits-text", "--vary", "scheduler=ddim,euler",
                   "--vary", "steps=2,4", "--vary", "guidance_scale=1,4", "-n", "1", "-o", str(out))
    assert len(doc["images"]) == 8 and len({e["path"] for e in doc["images"]}) == 8
    paths = [g["path"] for g in doc["grids"]]
    stem = "grid-0000-s0-a-handwritten-digit-7"
    assert paths == [str(out / f"{stem}-guidance-scale-1.png"), str(out / f"{stem}-guidance-scale-4.png")]
    assert doc["grid"] == paths[0] and [g["images"] for g in doc["grids"]] == [4, 4]
    grid = Image.open(paths[1])
    assert json.loads(grid.info["diffcli-grid"])["axes"] == [
        {"key": "scheduler", "values": ["ddim", "euler"]}, {"key": "steps", "values": [2, 4]},
        {"key": "guidance_scale", "values": [4.0]}]
    # cells are 16x16, scaled up (nearest) to 96x96; above and left of them is a label region with text
    gray = np.asarray(grid.convert("L"), dtype=int)
    assert grid.size[0] > 2 * 96 + 40 and grid.size[1] > 2 * 96 + 40
    tile = pixels(doc["images"][7]["path"]).repeat(6, 0).repeat(6, 1)  # a grayscale digit
    found = [(y, x) for y, x in np.argwhere(gray == tile[0, 0])
             if y + 96 <= gray.shape[0] and x + 96 <= gray.shape[1] and np.array_equal(gray[y, x:x + 96], tile[0])
             and np.array_equal(gray[y:y + 96, x:x + 96], tile)]
    assert len(found) == 1  # the euler/4-step cell, bottom right
    top, left = found[0]
    assert top > 40 and left > 40
    header, margin = gray[:top - 4], gray[top:, :left - 4]
    assert (header < 128).sum() > 200 and (margin < 128).sum() > 100  # dark glyph pixels: titles and values
    rows_with_ink = np.nonzero((header < 128).any(axis=1))[0]
    assert rows_with_ink.max() - rows_with_ink.min() >= 24  # two text lines, each >= 12 px tall
    plain = run_json("txt2img", "a handwritten digit 7", "--preset", "digits-text", "--scheduler", "euler",
                     "--steps", "4", "--guidance-scale", "4", "-n", "1", "-o", str(tmp_path / "p"))
    assert np.array_equal(pixels(doc["images"][7]["path"]), pixels(plain["images"][0]["path"]))


@pytest.mark.parametrize("key", ["model", "revision", "device", "dtype", "output", "threads", "allow_pickle",
                                 "compile", "num_images", "batch_size", "scheduler_options"])
def test_run_level_keys_are_refused(key):
    result = invoke("txt2img", "a cat", "--vary", f"{key}=a,b")
    assert result.exit_code == 2
    assert f"--vary {key}: " in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("spec, message", [
    ("steps=5,abc", "--vary steps: expected an integer"), ("steps=0,5", "--vary steps: expected an integer >= 1"),
    ("scheduler=ddim,nope", "--vary scheduler: unknown scheduler 'nope'"),
    ("steps=5,5", "--vary steps: 5 is listed twice"),
    ("guidance_scale=.nan", "--vary guidance_scale: expected a finite number"), ("steps", "expected KEY=V1,V2"),
    ("steps=", "--vary steps: no values"), ("stepz=1,2", "--vary stepz: unknown key; did you mean 'steps'?"),
    ("width=16,1e9", "--vary width: expected an integer"),
])
def test_bad_values_exit_2_naming_the_option(spec, message):
    result = invoke("txt2img", "a cat", "--vary", spec)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_unconditional_refuses_prompt_axes_and_checks_every_schedule(tiny_ddpm, monkeypatch):
    import diffcli.run.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    result = invoke("unconditional", "--model", str(tiny_ddpm), "--vary", "guidance_scale=1,2")
    assert result.exit_code == 2 and "--vary guidance_scale: this unconditional model" in result.stderr
    # euler takes use_karras_sigmas, ddim does not: the ddim cells are refused before loading
    result = invoke("unconditional", "--model", str(tiny_ddpm), "--set", "scheduler_options={use_karras_sigmas: true}",
                    "--vary", "scheduler=euler,ddim", "--steps", "2")
    assert result.exit_code == 2 and "use_karras_sigmas: not an option of DDIMScheduler" in result.stderr
    result = invoke("unconditional", "--model", str(tiny_ddpm), "--vary", "steps=2,5000")
    assert result.exit_code == 2 and "5000 steps" in result.stderr


def test_batches_never_mix_cells():
    facts = ModelFacts("txt2img", "StableDiffusionPipeline", 16, 16, 8, False, "m")
    axes = parse_vary(["scheduler=ddim,euler", "scheduler_options.timestep_spacing=leading,trailing"])
    items = expand(Preset(model="m", steps=3), facts, [PromptLine("a cat")], axes)
    assert len(items) == 4 and len({item.stem for item in items}) == 4
    assert all(len({(i.scheduler, i.scheduler_options) for i in batch}) == 1 for batch in batches(items, 8))
    assert len(batches(items, 8)) == 4
    prompts = expand(Preset(model="m", steps=3), facts, None, parse_vary(['prompt="a cat, red",a dog']))
    assert [(i.prompt, i.cell_values()) for i in prompts] == [("a cat, red", {"prompt": "a cat, red"}),
                                                              ("a dog", {"prompt": "a dog"})]


def test_skip_existing_rerun_makes_nothing_and_loads_nothing(tiny_ddpm, tmp_path, monkeypatch):
    args = ("unconditional", "--model", str(tiny_ddpm), "--vary", "steps=2,3", "--vary", "seed=1,2",
            "-o", str(tmp_path / "v"))
    first = run_json(*args)
    assert [e["cell"] for e in first["images"]] == [{"steps": 2, "seed": 1}, {"steps": 2, "seed": 2},
                                                    {"steps": 3, "seed": 1}, {"steps": 3, "seed": 2}]
    assert first["grids"][0]["axes"] == [{"key": "steps", "values": [2, 3]}, {"key": "seed", "values": [1, 2]}]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "v").iterdir()}
    import diffcli.run.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    again = run_json(*args, "--skip-existing")
    assert [e["path"] for e in again["images"]] == [e["path"] for e in first["images"]]
    assert all(e["existing"] for e in again["images"]) and [e["cell"] for e in again["images"]] == \
        [e["cell"] for e in first["images"]]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "v").iterdir()} == before
    assert again["grids"] == first["grids"] and again["grid"] == first["grid"]  # reported as is, not rewritten
    grid = Path(first["grid"])
    made = pixels(grid)
    grid.unlink()
    remade = run_json(*args, "--skip-existing")  # a deleted grid is made again from the images on disk
    assert remade["grids"] == first["grids"] and np.array_equal(pixels(grid), made)
    assert Image.open(grid).info["diffcli-grid"] == json.dumps({"axes": first["grids"][0]["axes"]}, sort_keys=True)
    refused = invoke(*args, "--device", "cpu")
    assert refused.exit_code == 4  # same names again without --skip-existing: the cells exist


def test_skip_existing_rerun_reports_and_remakes_the_overview_grid(tiny_ddpm, tmp_path, monkeypatch):
    args = ("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "3", "-o", str(tmp_path / "o"))
    first = run_json(*args)
    grid = Path(first["grid"])
    made, stamp = pixels(grid), grid.stat().st_mtime_ns
    import diffcli.run.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    again = run_json(*args, "--skip-existing")
    assert again["grid"] == first["grid"] and grid.stat().st_mtime_ns == stamp
    grid.unlink()
    remade = run_json(*args, "--skip-existing")
    assert remade["grid"] == first["grid"] and np.array_equal(pixels(grid), made)
    two = run_json("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "-o", str(tmp_path / "o"),
                   "--skip-existing")  # the same grid name, other images: the grid is this run's, not the last one's
    assert two["grid"] == first["grid"] and pixels(grid).shape != made.shape  # 2 tiles in a row, not 3 in two
    assert run_json(*args, "--skip-existing")["grid"] == first["grid"] and np.array_equal(pixels(grid), made)
    alone = run_json("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "1", "-o", str(tmp_path / "o"),
                     "--skip-existing")
    assert alone["grid"] is None  # one image has no overview


@pytest.mark.slow
def test_two_processes_build_the_same_grid(tiny_ddpm, tmp_path):
    common = ["unconditional", "--model", str(tiny_ddpm), "--vary", "scheduler=ddim,euler", "--vary", "steps=2,3",
              "--json", "--quiet"]
    one = launch(1, *common, "-o", str(tmp_path / "one"))
    two = launch(2, *common, "-o", str(tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    doc = json.loads(two.stdout)
    assert doc["processes"] == 2 and [e["cell"]["steps"] for e in doc["images"]] == [2, 3, 2, 3]
    assert doc["grids"][0]["path"] == str(tmp_path / "two" / "grid-0000-s0.png") and doc["grids"][0]["images"] == 4
    a, b = (Image.open(tmp_path / name / "grid-0000-s0.png") for name in ("one", "two"))
    assert a.info["diffcli-grid"] == b.info["diffcli-grid"]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_skip_existing_with_50000_items_compares_items_linearly(tmp_path, monkeypatch):
    """Half of 50,000 items done: splitting them compares items O(n) times (it was `item not in todo`, O(n^2))."""
    from diffcli.plan.items import Item, ModelFacts, build_items
    from diffcli.plan.presets import Preset
    from diffcli.run import generate
    from diffcli.sinks.folder import OutputFolder

    facts = ModelFacts(task="unconditional", class_name="DDPMPipeline", width=8, height=8, size_multiple=1,
                       fixed_size=True, name="m")
    items = build_items(Preset(model="m", num_images=50_000, steps=2), facts)
    out = tmp_path / "out"
    out.mkdir()
    for item in items[::2]:
        (out / f"{item.stem}.png").touch()
    seen = {}
    monkeypatch.setattr(generate, "check_existing", lambda item, path: True)  # empty files: no metadata to read
    monkeypatch.setattr(generate, "_generate", lambda command, task, preset, todo, folder, sinks, name, loaded,
                        report, started, existing, config=None: seen.update(todo=todo, existing=existing))
    comparisons = [0]
    original = Item.__eq__

    def counting(self, other):
        comparisons[0] += 1
        return original(self, other)

    monkeypatch.setattr(Item, "__eq__", counting)
    report = generate.execute("unconditional", "unconditional", Preset(model="m"), items,
                              OutputFolder(out, "unconditional", "skip"), [], "m")
    assert len(seen["todo"]) == 25_000 and len(seen["existing"]) == 25_000 and len(report.skipped) == 25_000
    assert comparisons[0] <= 2 * len(items), comparisons[0]


def test_replayed_cells_keep_their_names_and_skip_checks_the_files_own_settings(tiny_sd, tmp_path):
    """Two --vary cells replayed into one folder do not collide (the record keeps the cell); --skip-existing on a
    file made with other settings is exit 4 naming the difference, never a report of settings it does not have."""
    doc = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--seed", "5", "-o", str(tmp_path / "v"),
                   "--vary", "steps=2,3")
    out = tmp_path / "r"
    names = [Path(run_json("replay", e["path"], "-o", str(out))["images"][0]["path"]).name for e in doc["images"]]
    assert names == ["0000-2-s5-a-cat.png", "0001-3-s5-a-cat.png"]
    for entry, name in zip(doc["images"], names):
        assert np.array_equal(pixels(out / name), pixels(entry["path"]))
    assert sorted(path.name for path in out.iterdir()) == names  # one image per replay, no one-cell grid
    kept = run_json("replay", doc["images"][0]["path"], "-o", str(out), "--skip-existing")
    assert kept["images"][0]["existing"] is True and kept["images"][0]["steps"] == 2
    plain = run_json("txt2img", "a cat", "--model", str(tiny_sd), "--seed", "5", "--steps", "2", "-o",
                     str(tmp_path / "p"))
    clash = invoke("txt2img", "a cat", "--model", str(tiny_sd), "--seed", "5", "--steps", "3", "-o",
                   str(tmp_path / "p"), "--skip-existing", "--json")
    assert clash.exit_code == 4, clash.output
    assert "exists but was made with steps 2, not 3" in clash.stderr
    assert json.loads(clash.stdout)["status"] == "error"
    assert Path(plain["images"][0]["path"]).is_file()
