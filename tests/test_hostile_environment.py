"""Hostile input battery: environment variables diffcli or its libraries read as numbers, and a terminal encoding
that cannot show the output (hostile-findings-2.md 13-19). Each is refused up front in one line (exit 2) with one
JSON document under --json, before any library that reads it is imported; none prints a library message on stdout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile_runner import Case, check_files, check_result, run, run_case, snapshot

TXT = ["txt2img", "a cat", "--model", "{sd}", "--steps", "1", "-o", "{dir}/out", "--quiet"]
HUB = ["txt2img", "a cat", "--model", "owner/name", "--steps", "1", "-o", "{dir}/out", "--quiet"]


def env_case(name: str, variables: dict[str, str], says: str, args: list[str] = TXT) -> Case:
    return Case(name, args, 2, says, env=variables, seconds=60)


CASES = [
    env_case("world-size-rank-without-launcher", {"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR is not set"),
    env_case("world-size-arabic-indic", {"WORLD_SIZE": "\u0662", "RANK": "\u0661"}, "WORLD_SIZE="),
    env_case("world-size-alone", {"WORLD_SIZE": "2"}, "RANK is not set"),
    env_case("rank-not-below-world", {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1",
                                      "MASTER_PORT": "29500"}, "RANK=2"),
    env_case("world-size-huge", {"WORLD_SIZE": "9" * 30}, "WORLD_SIZE="),
    env_case("omp-threads-huge", {"OMP_NUM_THREADS": "99999999999"}, "OMP_NUM_THREADS"),
    env_case("omp-threads-5000", {"OMP_NUM_THREADS": "5000"}, "from 1 to 1024"),
    env_case("omp-threads-zero", {"OMP_NUM_THREADS": "0"}, "OMP_NUM_THREADS"),
    env_case("omp-threads-text", {"OMP_NUM_THREADS": "four"}, "OMP_NUM_THREADS"),
    env_case("etag-timeout-nan-hub", {"HF_HUB_ETAG_TIMEOUT": "nan"}, "HF_HUB_ETAG_TIMEOUT", HUB),
    env_case("etag-timeout-inf-hub", {"HF_HUB_ETAG_TIMEOUT": "inf"}, "HF_HUB_ETAG_TIMEOUT", HUB),
    env_case("etag-timeout-1e309-hub", {"HF_HUB_ETAG_TIMEOUT": "1e309"}, "HF_HUB_ETAG_TIMEOUT", HUB),
    env_case("etag-timeout-fraction-local", {"HF_HUB_ETAG_TIMEOUT": "1.5"}, "HF_HUB_ETAG_TIMEOUT"),
    env_case("download-timeout-nan", {"HF_HUB_DOWNLOAD_TIMEOUT": "nan"}, "HF_HUB_DOWNLOAD_TIMEOUT"),
    Case("omp-threads-list-ok", TXT, 0, env={"OMP_NUM_THREADS": "1,1"}, seconds=120),
    Case("launcher-variables-of-one-process-ok", TXT, 0, env={"WORLD_SIZE": "1", "RANK": "0"}, seconds=120),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_environment(case: Case, tmp_path: Path, tiny_sd: Path) -> None:
    run_case(case, tmp_path, sd=tiny_sd)


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_unencodable_output_is_escaped(as_json: bool, tmp_path: Path, tiny_ddpm: Path) -> None:
    """PYTHONIOENCODING=ascii and a non-ASCII output folder: the image is made and its path shown escaped."""
    before = snapshot(tmp_path)
    args = ["unconditional", "--model", str(tiny_ddpm), "--steps", "1", "-o", str(tmp_path / "out" / "\u00c9"),
            "--quiet", *(["--json"] if as_json else [])]
    result = run(args, tmp_path, env={"PYTHONIOENCODING": "ascii"})
    check_result(result, 0, as_json=as_json)
    assert ("\\u00c9" if as_json else "\\xc9") in result.stdout, result.stdout
    assert (tmp_path / "out" / "\u00c9" / "0000-s0.png").is_file()
    check_files(tmp_path, before, "out")
