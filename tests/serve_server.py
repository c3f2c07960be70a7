"""The `diffcli serve` subprocess the serve tests drive, and helpers to call it (urllib and bare sockets)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import REPO

KEY = "test-key-0123456789"
PROMPT = "a handwritten digit 3"
LONG_STEPS = 900  # a request that runs for many seconds, until it is interrupted


class Server:
    """A `diffcli serve` subprocess: its URL, its stderr lines, and helpers to call it."""

    def __init__(self, cwd: Path, *args: str, key: str | None = KEY, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1", **(env or {})}
        env.pop("DIFFCLI_API_KEY", None)
        if key is not None:
            env["DIFFCLI_API_KEY"] = key
        self.key = key
        self.process = subprocess.Popen([sys.executable, "-m", "diffcli", "serve", "--preset", "digits-text",
                                         "--steps", "4", "--port", "0", *args], cwd=cwd, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180) or self.process.poll() is not None:
            self.process.kill()
            raise AssertionError("the server did not start:\n" + "".join(self.lines))
        line = next(line for line in self.lines if "serving" in line)
        self.url = line.split(" on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if "serving" in line:
                self.ready.set()
        self.ready.set()

    def client(self):  # noqa: ANN201 - an openai.OpenAI
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key or "none", max_retries=0, timeout=120)

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, key: str | None = "default") -> tuple[int, dict, dict]:
        """(status, JSON body, headers) of one plain HTTP request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        key = self.key if key == "default" else key
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null"), dict(err.headers)

    def alive(self) -> bool:
        return self.call("GET", "/v1/models")[0] == 200

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)



def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=int)


def text_chunks(png: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(png))
    image.load()
    return dict(image.text)


def raw_http(server: Server, request_line: bytes, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    """One request over a bare socket (headers as given); (status, JSON body) of the answer."""
    head = request_line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + KEY.encode()
    head += b"".join(f"\r\n{k}: {v}".encode() for k, v in headers.items()) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the server closed with part of an oversized body unread: its answer came first
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def long_request(server: Server, results: list, **fields) -> threading.Thread:
    """An A1111 txt2img of LONG_STEPS steps in a thread; its (status, body, headers) lands in `results`."""
    body = {"prompt": "a handwritten digit 1", "steps": LONG_STEPS, "seed": 1, **fields}
    thread = threading.Thread(target=lambda: results.append(server.call("POST", "/sdapi/v1/txt2img", body)))
    thread.start()
    return thread


def wait_for_progress(server: Server, at_least: int = 1) -> dict:
    for _ in range(600):
        status, body, _ = server.call("GET", "/sdapi/v1/progress")
        if status == 200 and body["state"]["sampling_step"] >= at_least:
            return body
        time.sleep(0.05)
    raise AssertionError("no progress")


def interrupt_and_wait(server: Server, thread: threading.Thread) -> None:
    assert server.call("POST", "/sdapi/v1/interrupt")[0] == 200
    thread.join(60)
    assert not thread.is_alive()
