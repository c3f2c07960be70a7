"""`diffcli serve` under load: images/s and latency at several concurrencies, against one-at-a-time serving.

    python bench/serve.py                       # digits-text, 64 requests per level, concurrency 1, 4, 8, 16
    python bench/serve.py --requests 4          # a smoke run (seconds)
    python bench/serve.py --preset sd15 --steps 20 --device cuda --requests 32

Starts one server (loopback only, a free port, --max-batch 8 unless told otherwise), sends a fixed
number of OpenAI-style requests (`POST /v1/images/generations`, n=1, each its own seed) from N client
threads per level, and stops the server with SIGTERM when done: it never runs open-ended. Concurrency
1 is the baseline (the same requests, one at a time). Reported per level: images/s, p50 and p95
latency, and the server's peak RSS so far (VmHWM, Linux); then each level's images/s over the
baseline's. The goal: at concurrency 8, at least 2x the baseline. Writes bench/results/serve.json
(unless --no-save).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-serve-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: argparse.Namespace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "diffcli", "serve", "--preset", args.preset, "--steps", str(args.steps),
               "--host", "127.0.0.1", "--port", str(port), "--max-batch", str(args.max_batch),
               "--max-queue", str(max(args.concurrency) * 2), "--quiet"]
    if args.device:
        command += ["--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DIFFCLI_API_KEY": KEY}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}): {process.stderr.read()[-400:]}")
        try:
            call(port, "GET", "/v1/models", None)
            return process
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not start in time")


def call(port: int, method: str, path: str, body: dict | None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def level(args: argparse.Namespace, port: int, concurrency: int, first_seed: int) -> dict:
    """`args.requests` requests from `concurrency` client threads: images/s and latencies."""

    def one(seed: int) -> float:
        started = time.perf_counter()
        answer = call(port, "POST", "/v1/images/generations",
                      {"prompt": args.prompt, "n": 1, "seed": seed, "steps": args.steps})
        assert len(answer["data"]) == 1
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(one, range(first_seed, first_seed + args.requests)))
    wall = time.perf_counter() - started
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    return {"concurrency": concurrency, "requests": args.requests, "wall_s": round(wall, 3),
            "images_per_s": round(args.requests / wall, 3), "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(p95, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="digits-text")
    parser.add_argument("--prompt", default="a handwritten digit 7")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4,8,16", help="comma-separated client counts (1 first)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--start-timeout", type=float, default=300)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",")} | {1})
    if args.requests < 1:
        raise SystemExit("--requests must be >= 1")
    port = free_port()
    process = start(args, port)
    results = []
    try:
        call(port, "POST", "/v1/images/generations", {"prompt": args.prompt, "n": 1, "seed": 0})  # warm
        for number, concurrency in enumerate(args.concurrency):
            row = level(args, port, concurrency, first_seed=1 + number * args.requests)
            row["server_peak_rss_mb"] = peak_rss_mb(process.pid)
            results.append(row)
            print(f"concurrency {concurrency:>3}: {row['images_per_s']:8.2f} images/s  p50 {row['p50_s']:.3f}s  "
                  f"p95 {row['p95_s']:.3f}s  peak RSS {row['server_peak_rss_mb']} MB", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    baseline = results[0]["images_per_s"]
    for row in results:
        row["vs_one_at_a_time"] = round(row["images_per_s"] / baseline, 2)
    print("images/s over one at a time: " + ", ".join(f"c={r['concurrency']}: {r['vs_one_at_a_time']}x"
                                                        for r in results))
    eight = next((r for r in results if r["concurrency"] == 8), None)
    if eight is not None:
        print(f"goal (concurrency 8 >= 2x one at a time): {'met' if eight['vs_one_at_a_time'] >= 2 else 'NOT met'}")
    print(f"server exit code after SIGTERM: {code}")
    if not args.no_save:
        out = REPO / "bench" / "results" / "serve.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"preset": args.preset, "steps": args.steps, "max_batch": args.max_batch,
                                   "levels": results}, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
