"""Planning as one step: `make_plan` over facts read up front; a no-op resume and a planning error import
neither torch nor diffusers; the pipeline-signature cache is type-checked like any file diffcli did not write."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli

MODULES = ("torch", "diffusers", "transformers")


def imported(args: list[str], env: dict[str, str], cwd) -> tuple[int, set[str], str]:
    """Run diffcli under `-X importtime`: (exit code, which heavy modules it imported, stderr without them)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "diffcli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    lines = done.stderr.splitlines()
    found = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    rest = "\n".join(line for line in lines if not line.startswith("import time:"))
    return done.returncode, found & set(MODULES), rest


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "DIFFCLI_FACTS_CACHE": str(tmp_path / "facts"), "NO_COLOR": "1"}


@pytest.mark.slow
def test_a_no_op_resume_and_a_planning_error_import_neither_torch_nor_diffusers(tmp_path, env):
    args = ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "-n", "2", "-o", str(tmp_path / "out"),
            "--steps", "2"]
    first = run_cli(*args, env={"DIFFCLI_FACTS_CACHE": env["DIFFCLI_FACTS_CACHE"]})  # fills the signature cache
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "facts").is_dir()
    code, heavy, err = imported([*args, "--skip-existing", "--json"], env, tmp_path)
    assert code == 0 and heavy == set(), (heavy, err)
    code, heavy, err = imported([*args, "--width", "13"], env, tmp_path)
    assert code == 2 and heavy == set() and err.strip().splitlines()[-1].startswith("Error: width: 13"), err
    code, heavy, _ = imported([*args, "-n", "3", "--skip-existing"], env, tmp_path)  # one image left to make
    assert code == 0 and set(MODULES) <= heavy  # the probe sees the heavy imports when there is work
    assert len(list((tmp_path / "out").glob("0000-s*.png"))) == 3


@pytest.mark.slow
def test_a_no_op_resume_still_checks_what_the_kept_images_say(tmp_path, env):
    """Nothing is imported, but a kept image made with other settings is still refused (exit 4)."""
    args = ["txt2img", "a handwritten digit 7", "--preset", "digits-text", "-o", str(tmp_path / "out")]
    assert run_cli(*args, "--steps", "2", env={"DIFFCLI_FACTS_CACHE": env["DIFFCLI_FACTS_CACHE"]}).returncode == 0
    code, heavy, err = imported([*args, "--steps", "3", "--skip-existing"], env, tmp_path)
    assert code == 4 and heavy == set() and "exists but" in err, err


@pytest.mark.parametrize("content", [
    b"not json", b"[]", json.dumps({"format": 1, "classes": {"StableDiffusionPipeline": {
        "components": ["unet", "../x"], "call_defaults": {}}}}).encode(),
    json.dumps({"format": 1, "classes": {"StableDiffusionPipeline": {
        "components": ["unet"], "call_defaults": {"num_inference_steps": True}}}}).encode(),
    json.dumps({"format": 1, "classes": {"StableDiffusionPipeline": {
        "components": ["unet"], "call_defaults": {"guidance_scale": float("nan")}}}}).encode(),
])
def test_a_forged_signature_cache_is_read_again_from_diffusers(tmp_path, monkeypatch, content):
    from diffcli.run import signatures

    monkeypatch.setenv("DIFFCLI_FACTS_CACHE", str(tmp_path))
    signatures._cache_path().write_bytes(content)
    found = signatures.pipeline_signature("StableDiffusionPipeline")
    assert found is not None and found.call_defaults["num_inference_steps"] == 50
    assert found.call_defaults["guidance_scale"] == 7.5 and "text_encoder" in found.components
    again = json.loads(signatures._cache_path().read_text())["classes"]["StableDiffusionPipeline"]
    assert again["call_defaults"]["num_inference_steps"] == 50  # rewritten with what diffusers says


def test_the_signature_cache_is_never_followed_through_a_link(tmp_path, monkeypatch):
    from diffcli.run import signatures

    monkeypatch.setenv("DIFFCLI_FACTS_CACHE", str(tmp_path))
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"format": 1, "classes": {"StableDiffusionPipeline": {
        "components": ["unet"], "call_defaults": {"num_inference_steps": 3}}}}))
    signatures._cache_path().symlink_to(target)
    assert signatures.pipeline_signature("StableDiffusionPipeline").call_defaults["num_inference_steps"] == 50
    assert signatures.pipeline_signature("NoSuchPipeline") is None


def test_make_plan_is_one_step_over_facts():
    """No model, no files: the facts alone decide the items, the schedules to verify and the warnings."""
    from diffcli.errors import UsageError
    from diffcli.plan.items import ModelFacts, PromptLine
    from diffcli.plan.make_plan import make_plan
    from diffcli.plan.presets import Preset
    from diffcli.plan.vary import parse_vary

    facts = ModelFacts(task="txt2img", class_name="StableDiffusionPipeline", width=16, height=16, size_multiple=8,
                       fixed_size=False, name="digits-text", defaults={"steps": 50, "guidance_scale": 7.5})
    preset = Preset(model="m", name="digits-text", prompt="a cat", num_images=2, every=60, steps=50)
    plan = make_plan(preset, facts)
    assert [(item.prompt, item.seed, item.steps) for item in plan.items] == [("a cat", 0, 50), ("a cat", 1, 50)]
    assert [(s.scheduler, s.steps) for s in plan.schedules] == [(None, frozenset({50}))]
    assert any("only understands digits" in w for w in plan.warnings) and not plan.vary
    plan = make_plan(preset, facts, [PromptLine("seven", 1, {"steps": 4})], parse_vary(["scheduler=ddim,euler"]))
    assert plan.vary and {s.scheduler for s in plan.schedules} == {"ddim", "euler"}
    assert plan.image_names()[0].startswith("0000-ddim-s0-seven") and any("--every 60" in w for w in plan.warnings)
    with pytest.raises(UsageError, match="no image-to-image pipeline"):
        make_plan(Preset(model="m", prompt="a", init_image="x.png"), facts.__class__(**{**facts.__dict__,
                                                                                        "img2img": False}))
