"""Hostile input battery: where the results go. Output paths that are files, links, devices, too long or
on read-only and full filesystems (real tmpfs mounts), existing results and flags that exclude each
other, and a stdout that is full, closed or a pipe closed early. Each case runs with --json
(tests/hostile_runner.py) unless it is about the human output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hostile_runner import Case, check_files, fill, one_document, one_error_line, pngs, run, run_case, snapshot

GEN = ["unconditional", "--model", "{model}", "--steps", "2", "-n", "2", "--seed", "0", "--quiet"]
OUT = GEN + ["-o", "{dir}/out"]
PNG = b"\x89PNG\r\n\x1a\nnot really"  # what was there before: must survive a refusal or a skip


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def touch(*names: str, content: bytes = b"") -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
    return prepare


def folders(*names: str) -> Callable[[Path], None]:
    return lambda folder: [(folder / name).mkdir(parents=True) for name in names] and None


def link(name: str, target: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).symlink_to(target.replace("{dir}", str(folder)))


def stale_writers(folder: Path) -> None:
    """What a writer killed mid-file leaves: temp files (pid in the name) and a lock (pid inside)."""
    pid = dead_pid()
    (folder / "out" / "frames").mkdir(parents=True)
    (folder / "out" / f".diffcli-tmp-{pid}-dead-0000-s0.png").write_bytes(b"")
    (folder / "out" / "frames" / f".diffcli-tmp-{pid}-dead-0000-s0-step0001-t0500-xt.png").write_bytes(b"\x89")
    (folder / "out" / ".diffcli-lock-0001-s1.png").write_text(str(pid))


def mount_tmpfs(folder: Path, size: str, read_only: bool = False, fill_up: bool = False) -> None:
    """A real tmpfs at folder/out (unmounted by the fixture); prefilled to ENOSPC with `fill_up`."""
    target = folder / "out"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        target.rmdir()
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    MOUNTED.append(target)
    if fill_up:
        with open(target / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)


MOUNTED: list[Path] = []


@pytest.fixture(autouse=True)
def _unmount():
    yield
    while MOUNTED:
        subprocess.run(["umount", "-l", str(MOUNTED.pop())], check=False)


def unchanged(*names: str) -> Callable[[Path, dict[str, Any]], None]:
    def check(folder: Path, doc: dict[str, Any]) -> None:
        for name in names:
            assert (folder / name).read_bytes() == PNG, name
    return check


def images(*names: str, existing: tuple[str, ...] = ()) -> Callable[[Path, dict[str, Any]], None]:
    """The document lists exactly `names` (those in `existing` marked so); the made ones verify as PNGs."""
    def check(folder: Path, doc: dict[str, Any]) -> None:
        listed = [(Path(e["path"]).name, bool(e.get("existing"))) for e in doc["images"]]
        assert listed == [(name, name in existing) for name in names], listed
        made = [name for name in names if name not in existing]
        assert pngs(folder / "out", made) == made
    return check


LONG = "a" * 300
CASES = [
    Case("baseline", OUT, 0, check=images("0000-s0.png", "0001-s1.png")),
    # the output path itself
    Case("output-is-file", OUT, 4, "is a file, not a folder", prepare=touch("out")),
    Case("output-dangling-symlink", OUT, 4, "broken symbolic link", prepare=link("out", "{dir}/nowhere/x")),
    Case("output-symlink-loop", OUT, 4, "broken symbolic link", prepare=link("out", "{dir}/out")),
    Case("output-fifo", OUT, 4, "not a folder", prepare=lambda f: os.mkfifo(f / "out")),
    Case("output-dev-null", GEN + ["-o", "/dev/null"], 4, "/dev/null"),
    Case("output-proc", GEN + ["-o", "/proc/self/diffcli"], 4, "/proc/self/diffcli"),
    Case("output-under-proc-file", GEN + ["-o", "/proc/self/status/out"], 4, "/proc/self/status/out"),
    Case("output-parent-is-file", GEN + ["-o", "{dir}/out/sub"], 4, "a parent is a file", prepare=touch("out")),
    Case("output-300-characters", GEN + ["-o", "{dir}/out/" + LONG], 4, "name too long"),
    Case("output-300-characters-relative", GEN + ["-o", LONG + "/x"], 4, "name too long", output=LONG),
    Case("output-path-over-4096", GEN + ["-o", "{dir}/out/" + "/".join(["d" * 200] * 25)], 4, "name too long"),
    Case("output-name-escape-sequence", GEN + ["-o", "{dir}/o\x1b]0;x\x07"], 4, "o\\x1b]0;x\\x07",
         prepare=touch("o\x1b]0;x\x07"), output="o\x1b]0;x\x07"),
    # what is already in it
    Case("existing-image", OUT, 4, "already exists", prepare=touch("out/0000-s0.png", content=PNG),
         check=unchanged("out/0000-s0.png")),
    Case("overwrite-and-skip", OUT + ["--overwrite", "--skip-existing"], 2, "exclude each other"),
    Case("existing-skip", OUT + ["--skip-existing"], 0, prepare=touch("out/0000-s0.png", content=PNG),
         check=lambda f, d: [unchanged("out/0000-s0.png")(f, d),
                             images("0000-s0.png", "0001-s1.png", existing=("0000-s0.png",))(f, d)]),
    Case("existing-overwrite", OUT + ["--overwrite"], 0, prepare=touch("out/0000-s0.png", content=PNG),
         check=images("0000-s0.png", "0001-s1.png")),
    Case("image-name-is-folder", OUT, 4, "0000-s0.png", prepare=folders("out/0000-s0.png")),
    Case("image-name-is-folder-overwrite", OUT + ["--overwrite"], 4, "0000-s0.png",
         prepare=folders("out/0000-s0.png")),
    Case("frames-folder-is-file", OUT + ["--every", "1"], 4, "frames", prepare=touch("out/frames")),
    Case("grid-is-folder", OUT, 4, "grid-0000-s0.png", prepare=folders("out/grid-0000-s0.png"),
         check=images("0000-s0.png", "0001-s1.png")),
    Case("stale-temp-and-lock-files", OUT + ["--every", "1"], 0, prepare=stale_writers,
         check=images("0000-s0.png", "0001-s1.png")),
    # filesystems that refuse
    Case("read-only-tmpfs", OUT, 4, "not writable", prepare=lambda f: mount_tmpfs(f, "64k", read_only=True)),
    Case("full-tmpfs", OUT, 4, "disk full", prepare=lambda f: mount_tmpfs(f, "16k", fill_up=True), check=images()),
    Case("tmpfs-fills-mid-run", GEN[:5] + ["-n", "4"] + GEN[7:] + ["-o", "{dir}/out"], 4, "disk full",
         prepare=lambda f: mount_tmpfs(f, "8k"), check=images("0000-s0.png", "0001-s1.png")),
    Case("tmpfs-fills-with-frames", OUT + ["--every", "1"], 4, "disk full", prepare=lambda f: mount_tmpfs(f, "8k")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_output(case: Case, tmp_path: Path, tiny_ddpm: Path) -> None:
    run_case(case, tmp_path, model=tiny_ddpm)


# ------------------------------------------------------------------ stdout and stderr that cannot take the result

STREAMS = [  # id, args, stdout, stderr, exit code, what stderr says ("" = nothing at all)
    ("json-stdout-full", OUT + ["--json"], "/dev/full", "pipe", 4, "cannot write the result to stdout"),
    ("json-stdout-full-on-error", OUT + ["--json"], "/dev/full", "pipe", 4, "is a file, not a folder"),
    ("human-stdout-full", OUT, "/dev/full", "pipe", 4, "cannot write the result to stdout"),
    ("json-stdout-closed", OUT + ["--json"], "closed", "pipe", 4, "stdout is closed"),
    ("human-stdout-closed", OUT, "closed", "pipe", 4, "stdout is closed"),
    ("json-pipe-closed-early", OUT + ["--json"], "early", "pipe", 141, ""),
    ("human-pipe-closed-early", OUT, "early", "pipe", 141, ""),
    ("json-stderr-full-on-error", OUT + ["--json"], "pipe", "/dev/full", 4, None),
    ("human-stderr-closed-on-error", OUT, "pipe", "closed", 4, None),
]


@pytest.mark.parametrize("case", STREAMS, ids=[case[0] for case in STREAMS])
def test_hostile_standard_streams(case: tuple, tmp_path: Path, tiny_ddpm: Path) -> None:
    name, args, stdout, stderr, code, says = case
    if "on-error" in name:
        (tmp_path / "out").write_bytes(b"")
    before = snapshot(tmp_path)
    popen: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    closes = [fd for fd, kind in ((1, stdout), (2, stderr)) if kind == "closed"]
    for fd, kind in ((1, stdout), (2, stderr)):
        if kind == "/dev/full":
            popen["stdout" if fd == 1 else "stderr"] = open("/dev/full", "w")  # noqa: SIM115
    from tests.hostile_runner import start

    proc = start(fill(args, tmp_path, model=tiny_ddpm), tmp_path, close=tuple(closes), **popen)
    if stdout == "early":
        proc.stdout.close()  # the reader went away before anything was written
        err = proc.stderr.read()
        proc.wait(timeout=120)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    else:
        out, err = proc.communicate(timeout=120)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out or "", err or "")
    for handle in (popen["stdout"], popen["stderr"]):
        if handle is not subprocess.PIPE:
            handle.close()
    assert result.returncode == code, (result.returncode, result.stderr)
    if says == "":
        assert result.stderr == ""
    elif says is not None:
        one_error_line(result.stderr, says)
    else:  # stderr unusable: nothing shows there, and the document on stdout still says it, once
        assert result.stderr == ""
        if "--json" in args:
            assert "is a file" in one_document(result.stdout, code)["error"]["message"]
    check_files(tmp_path, before, "out")
    if code == 4 and "on-error" not in name and stdout != "early":
        assert pngs(tmp_path / "out") == ["0000-s0.png", "0001-s1.png", "grid-0000-s0.png"]  # the images were made


def test_tmpfs_helper_really_mounts(tmp_path: Path) -> None:
    """The filesystem cases are real: the folder is a mount point of the size asked for."""
    mount_tmpfs(tmp_path, "16k", fill_up=True)
    assert os.path.ismount(tmp_path / "out")
    assert shutil.disk_usage(tmp_path / "out").free == 0
