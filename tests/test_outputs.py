import errno
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffcli.errors import OutputError
from diffcli.plan.naming import slugify
from diffcli.sinks.folder import TEMP_PREFIX, OutputFolder, png_writer, save_png, write_atomic


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_slugs_are_safe_and_bounded(text):
    slug = slugify(text)
    assert 1 <= len(slug) <= 48
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in slug)
    assert not slug.startswith("-") and not slug.endswith("-") and ".." not in slug and "/" not in slug


def test_slug_examples():
    assert slugify("a cat playing bass") == "a-cat-playing-bass"
    assert slugify("../../etc/passwd\x00") == "etc-passwd"
    assert slugify("Ça va? 😀") == "ca-va"
    assert slugify("///") == "prompt"


def test_atomic_write_refuses_existing_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.png"
    save_png(target, Image.new("L", (2, 2)), {"k": "v"}, replace=False)
    assert Image.open(target).info["k"] == "v"
    with pytest.raises(FileExistsError):
        save_png(target, Image.new("L", (2, 2), 255), None, replace=False)
    assert Image.open(target).getpixel((0, 0)) == 0
    save_png(target, Image.new("L", (2, 2), 255), None, replace=True)
    assert Image.open(target).getpixel((0, 0)) == 255
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


@pytest.mark.parametrize("policy,final,outcome", [
    ("new", True, "refused"), ("new", False, "refused"), ("skip", True, "kept"), ("skip", False, "replaced"),
    ("overwrite", True, "replaced"), ("overwrite", False, "replaced"),
])
def test_output_folder_policies(tmp_path, policy, final, outcome):
    folder = OutputFolder(tmp_path / "o", "unconditional", policy)
    (tmp_path / "o").mkdir()
    save_png(tmp_path / "o" / "a.png", Image.new("L", (2, 2), 0), None, replace=False)
    writer = png_writer(Image.new("L", (2, 2), 255), None)
    if outcome == "refused":
        with pytest.raises(OutputError, match="already exists"):
            folder.publish("a.png", writer, final=final)
    else:
        path, existed = folder.publish("a.png", writer, final=final)
        assert path == tmp_path / "o" / "a.png" and existed == (outcome == "kept")
    assert Image.open(tmp_path / "o" / "a.png").getpixel((0, 0)) == (255 if outcome == "replaced" else 0)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png"]


def test_automatic_folders_are_numbered_and_made_at_first_write(tmp_path):
    first = OutputFolder(None, "txt2img")
    assert first.automatic and first.peek() is None and not (tmp_path / "outputs").exists()
    assert first.path_of("x.png") == Path("outputs/txt2img/NNNN/x.png") and not first.is_done("x.png")
    (tmp_path / "outputs" / "txt2img" / "0007").mkdir(parents=True)
    path, _ = first.publish("x.png", png_writer(Image.new("L", (2, 2)), None), final=True)
    assert path == Path("outputs/txt2img/0008/x.png") and path.is_file() and first.is_done("x.png")
    second = OutputFolder(None, "txt2img")
    assert second.root == Path("outputs/txt2img/0009") and second.root.is_dir()


def test_disk_full_leaves_nothing_partial(tmp_path):
    def fill(handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full"):
        write_atomic(tmp_path / "x.png", fill, replace=False)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_a_run_exits_4_and_keeps_finished(tiny_ddpm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import diffcli.sinks.folder as outputs
    from diffcli.cli.app import app

    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(outputs.os, "fsync", fsync)
    result = CliRunner().invoke(app, ["unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "3",
                                      "-o", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 4 and "disk full" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["0000-s0.png"]


def test_unwritable_output_folder(tmp_path):
    if os.geteuid() == 0:
        from diffcli.sinks.folder import describe

        err = describe(OSError(errno.EACCES, "Permission denied"), tmp_path / "x")
        assert "permission denied" in err.message and err.exit_code == 4
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(OutputError, match="not writable"):
        OutputFolder(folder, "unconditional").root


def test_two_writers_never_clobber(tmp_path):
    import threading

    errors, barrier = [], threading.Barrier(8)

    def writer(value):
        barrier.wait()
        try:
            save_png(tmp_path / "same.png", Image.new("L", (2, 2), value), None, replace=False)
        except FileExistsError as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(errors) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["same.png"]


def test_cell_names_keep_decimal_points():
    """strength 0.3 is named `0.3`, not `0-3` (a range); dots elsewhere never survive."""
    from diffcli.plan.naming import slugify

    assert slugify("0.3", keep=".") == "0.3" and slugify("7.5-0.25", keep=".") == "7.5-0.25"
    assert slugify("../..", keep=".") == "prompt" and slugify("a.b 1.5..2", keep=".") == "a-b-1.5-2"
    assert slugify("a cat 0.3") == "a-cat-0-3"  # prompt slugs as before


def test_a_run_that_fails_before_its_first_file_leaves_no_numbered_folder(tiny_ddpm, tmp_path, monkeypatch):
    """The numbered folder is made after loading; a failure in the first batch removes it again (empty only)."""
    import diffcli.run.sampling as sampling
    from tests.test_cli import invoke

    def broken(*_args, **_kwargs):
        raise RuntimeError("the first batch failed")

    with monkeypatch.context() as patched:  # the test's own working folder (a monkeypatch too) stays
        patched.setattr(sampling, "sample_batch", broken)
        result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "--json")
    assert result.exit_code == 1, result.output
    assert "the first batch failed" in result.stderr
    assert json.loads(result.stdout)["status"] == "error"
    assert list((tmp_path / "outputs" / "unconditional").iterdir()) == []  # made to number the run, now empty
    import diffcli.run.switch as switch

    def no_switch(*_args, **_kwargs):
        raise RuntimeError("setting up the sinks failed")

    with monkeypatch.context() as patched:  # a failure between making the folder and the first batch
        patched.setattr(switch, "SchedulerSwitch", no_switch)
        result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "--json")
    assert result.exit_code == 1 and "setting up the sinks failed" in result.stderr, result.output
    assert list((tmp_path / "outputs" / "unconditional").iterdir()) == []
    made = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "1", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["output"].endswith("0001")  # the number is free again
    real, calls = sampling.sample_batch, []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the second batch failed")
        return real(*args, **kwargs)

    with monkeypatch.context() as patched:  # a failure after a file landed: the folder and the file stay
        patched.setattr(sampling, "sample_batch", second_fails)
        result = invoke("unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "2", "-b", "1", "--json")
    assert result.exit_code == 1 and "the second batch failed" in result.stderr, result.output
    kept = tmp_path / "outputs" / "unconditional" / "0002"
    assert [path.name for path in kept.iterdir()] == ["0000-s0.png"]
