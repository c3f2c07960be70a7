"""A real 2-process run (torchrun, gloo on loopback) gives the same files as one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

pytestmark = pytest.mark.xdist_group("torchrun")  # the launches share one test worker: never two at once


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "diffcli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def images(folder):
    return {p.name: np.asarray(Image.open(p), dtype=int) for p in sorted(folder.glob("*.png"))}


@pytest.mark.slow
def test_two_processes_match_one(tiny_ddpm, tmp_path):
    common = ["unconditional", "--model", str(tiny_ddpm), "--steps", "5", "-n", "5", "-b", "2", "--seed", "10",
              "--every", "5", "--json", "--quiet"]
    single = launch(1, *common, "-o", str(tmp_path / "one"))
    double = launch(2, *common, "-o", str(tmp_path / "two"))
    assert single.returncode == 0, single.stderr
    assert double.returncode == 0, double.stderr
    one, two = images(tmp_path / "one"), images(tmp_path / "two")
    assert list(one) == list(two) == [f"{i:04d}-s{10 + i}.png" for i in range(5)] + ["grid-0000-s10.png"]
    for name in list(one)[:-1]:
        assert np.abs(one[name] - two[name]).max() <= 2, name
    assert sorted(p.name for p in (tmp_path / "two" / "frames").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "frames").iterdir())
    doc = json.loads(double.stdout)  # rank 0 alone prints: one document with every rank's images
    assert doc["processes"] == 2 and [i["seed"] for i in doc["images"]] == [10, 11, 12, 13, 14]
    assert len(doc["frames"]) == 5
    assert doc["grid"] == str(tmp_path / "two" / "grid-0000-s10.png")
    # the grid of a 2-process run shows all five images, like the single process's
    grid = "grid-0000-s10.png"
    assert one[grid].shape == two[grid].shape and np.abs(one[grid] - two[grid]).max() <= 2


@pytest.mark.slow
def test_skip_existing_completes_only_missing_items(tiny_ddpm, tmp_path):
    common = ["unconditional", "--model", str(tiny_ddpm), "--steps", "3", "-n", "4", "--quiet", "--json",
              "-o", str(tmp_path / "o")]
    first = launch(2, *common[:-4], "-n", "2", "--quiet", "--json", "-o", str(tmp_path / "o"))
    assert first.returncode == 0, first.stderr
    again = launch(2, *common, "--skip-existing")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    # every image is listed once, the kept ones marked existing; only the missing ones were made
    assert [(i["seed"], i.get("existing", False)) for i in doc["images"]] == [(0, True), (1, True), (2, False),
                                                                             (3, False)]
    assert [s["seed"] for s in doc["skipped"]] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "o").glob("0*.png")) == [f"{i:04d}-s{i}.png" for i in range(4)]


@pytest.mark.slow
def test_failure_on_a_rank_fails_the_run_naming_it(tiny_ddpm, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    # item 1 (seed 1, rank 0's share) publishes into a name that is a folder: that rank fails
    (out / "0001-s1.png").mkdir()
    result = launch(2, "unconditional", "--model", str(tiny_ddpm), "--steps", "2", "-n", "4", "--overwrite",
                    "-o", str(out), "--quiet")
    # torchrun itself exits 1 when a worker fails; each worker exited with diffcli's code (4: output problem)
    assert result.returncode != 0, result.stderr
    assert "exitcode  : 4" in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert ours == [f"Error: rank 0: cannot write {out / '0001-s1.png'}: Is a directory"]
