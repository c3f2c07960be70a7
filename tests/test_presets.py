from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcli.errors import PresetError
from diffcli.plan.presets import KEYS, Preset, build_preset, parse_set, resolve, shipped_names


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_presets_all_resolve():
    names = shipped_names()
    for required in ("ddpm-cifar10-32", "ddpm-celebahq-256", "ddpm-church-256", "digits", "digits-text"):
        assert required in names
    for name in names:
        preset = resolve(name, None).preset
        assert preset.model and preset.task in ("unconditional", "txt2img")
    assert resolve("ddpm-church-256", None).preset.model == "google/ddpm-ema-church-256"


def test_unknown_key_names_file_and_suggests(tmp_path):
    path = write(tmp_path / "p.yaml", {"model": "x/y", "stpes": 3})
    with pytest.raises(PresetError) as err:
        resolve(str(path), None)
    assert str(path) in err.value.message and "stpes" in err.value.message and "did you mean 'steps'" in err.value.message


@pytest.mark.parametrize("key,value,expected", [
    ("steps", "ten", "expected an integer"), ("steps", 0, ">= 1"), ("guidance_scale", -1, ">= 0"),
    ("every", 0, ">= 1"), ("batch_size", 0, ">= 1"), ("width", 4, ">= 8"), ("dtype", "fp8", "expected one of"),
    ("device", "tpu", "expected auto"), ("scheduler", "eulr", "did you mean 'euler'"), ("allow_pickle", "yes", "true or false"),
    ("steps", True, "expected an integer"), ("scheduler_options", [1], "mapping"),
])
def test_wrong_values_are_preset_errors(tmp_path, key, value, expected):
    path = write(tmp_path / "p.yaml", {"model": "x/y", key: value})
    with pytest.raises(PresetError) as err:
        resolve(str(path), None)
    assert f"{path}: {key}:" in err.value.message and expected in err.value.message


def test_malformed_yaml_reports_line(tmp_path):
    path = write(tmp_path / "p.yaml", "model: x/y\nsteps: [1, 2\nseed: 3\n")
    with pytest.raises(PresetError) as err:
        resolve(str(path), None)
    assert "malformed YAML" in err.value.message and "line" in err.value.message


def test_not_a_mapping(tmp_path):
    path = write(tmp_path / "p.yaml", "- a\n- b\n")
    with pytest.raises(PresetError, match="must be a mapping"):
        resolve(str(path), None)


def test_unknown_shipped_name_lists_close_ones():
    with pytest.raises(PresetError) as err:
        resolve("ddpm-chruch-256", None)
    assert "ddpm-church-256" in (err.value.hint or "")


def test_precedence_flags_over_set_over_file_over_shipped_over_defaults(tmp_path):
    path = write(tmp_path / "p.yaml", {"extends": "ddpm-church-256", "steps": 30, "seed": 5, "num_images": 2})
    resolved = resolve(str(path), None, ["steps=20", "seed=9"], {"seed": 11})
    p = resolved.preset
    assert p.model == "google/ddpm-ema-church-256"  # shipped
    assert p.scheduler == "ddpm"  # shipped
    assert p.num_images == 2  # user file
    assert p.steps == 20  # --set beats file
    assert p.seed == 11  # flag beats --set
    assert p.batch_size == 1  # default
    assert resolved.sources["seed"] == "flag" and resolved.sources["steps"] == "--set"
    assert resolved.sources["num_images"] == str(path.resolve())


def test_relative_model_resolves_against_preset_file(tmp_path):
    (tmp_path / "sub" / "models" / "mine").mkdir(parents=True)
    path = write(tmp_path / "sub" / "p.yaml", {"model": "models/mine"})
    assert resolve(str(path), None).preset.model == str((tmp_path / "sub" / "models" / "mine").resolve())
    path2 = write(tmp_path / "sub" / "q.yaml", {"model": "./missing"})
    assert resolve(str(path2), None).preset.model == str((tmp_path / "sub" / "missing").resolve())
    path3 = write(tmp_path / "sub" / "r.yaml", {"model": "google/ddpm-cifar10-32"})
    assert resolve(str(path3), None).preset.model == "google/ddpm-cifar10-32"


def test_set_parses_yaml_scalars_and_rejects_bad_items():
    assert parse_set(["steps=25", "guidance_scale=6.5", "scheduler_options={eta: 0.5}", "prompt=7"]) == {
        "steps": 25, "guidance_scale": 6.5, "scheduler_options": {"eta": 0.5}, "prompt": "7"}
    with pytest.raises(PresetError, match="expected key=value"):
        parse_set(["steps"])
    with pytest.raises(PresetError, match="unknown key"):
        parse_set(["stepz=3"])


def test_extends_cycle(tmp_path):
    write(tmp_path / "a.yaml", {"extends": str(tmp_path / "b.yaml"), "model": "x/y"})
    write(tmp_path / "b.yaml", {"extends": str(tmp_path / "a.yaml")})
    with pytest.raises(PresetError, match="cycle"):
        resolve(str(tmp_path / "a.yaml"), None)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=10),
    st.lists(st.integers(), max_size=2)), max_size=5))
def test_any_mapping_either_validates_or_raises_preset_error(data):
    data = {"model": "a/b", **data}
    try:
        preset = build_preset(data, "hyp")
    except PresetError as err:
        assert err.message.startswith("hyp: ")
        return
    assert isinstance(preset, Preset)
    assert set(data) <= set(KEYS)


def test_preset_fields_follow_the_key_table():
    import dataclasses

    from diffcli.plan.keys import KEY_TABLE

    assert [f.name for f in dataclasses.fields(Preset)] == [key.name for key in KEY_TABLE]
    defaults = Preset(model="a/b").to_dict()
    assert all(defaults[key.name] == key.default for key in KEY_TABLE if key.name != "model")
    assert Preset(model="a/b").replace(steps=7).steps == 7
    with pytest.raises(PresetError, match="steps: expected an integer >= 1, got 0"):
        Preset(model="a/b").replace(steps=0)


def test_the_preset_type_has_one_typed_field_per_key():
    """`Preset` is written out with real types (a checker can use them); it and the key table agree."""
    import dataclasses
    import typing

    from diffcli.plan.keys import KEY_TABLE
    from diffcli.plan.preset import Preset

    fields = dataclasses.fields(Preset)
    assert [f.name for f in fields] == [key.name for key in KEY_TABLE], "add the key's field to plan/preset.py"
    hints = typing.get_type_hints(Preset)
    for f, key in zip(fields, KEY_TABLE):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert default == key.default, f.name
        origin = typing.get_origin(hints[f.name]) or hints[f.name]
        wanted = {list: tuple}.get(key.type, key.type)  # `loras`: a tuple of checked entries
        args = typing.get_args(hints[f.name])
        assert (origin is wanted or wanted in args or typing.get_origin(args[0]) is wanted) if args else origin is wanted, f.name
        assert (type(None) in args) == key.nullable, f.name
