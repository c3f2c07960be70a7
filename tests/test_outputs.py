import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffcli.errors import OutputError
from diffcli.sinks.folder import TEMP_PREFIX, save_png, slugify, write_atomic


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
    save_png(target, Image.new("L", (2, 2)), {"k": "v"}, overwrite=False)
    with pytest.raises(OutputError, match="already exists"):
        save_png(target, Image.new("L", (2, 2), 255), None, overwrite=False)
    assert Image.open(target).getpixel((0, 0)) == 0
    save_png(target, Image.new("L", (2, 2), 255), None, overwrite=True)
    assert Image.open(target).getpixel((0, 0)) == 255
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_disk_full_leaves_nothing_partial(tmp_path):
    def fill(handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full"):
        write_atomic(tmp_path / "x.png", fill, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_a_run_exits_4_and_keeps_finished(tiny_ddpm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import diffcli.outputs as outputs
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
    from diffcli.sinks.folder import prepare_dir

    with pytest.raises(OutputError, match="not writable"):
        prepare_dir(folder)


def test_two_writers_never_clobber(tmp_path):
    import threading

    errors, barrier = [], threading.Barrier(8)

    def writer(value):
        barrier.wait()
        try:
            save_png(tmp_path / "same.png", Image.new("L", (2, 2), value), None, overwrite=False)
        except OutputError as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(errors) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["same.png"]
