"""Starting and stopping: bind, load and warm the model, serve with uvicorn, shut down cleanly.

The port is bound before the model loads (a busy port fails at once, exit 2) but only listens once
the model is warm. SIGTERM and SIGINT stop accepting connections; queued requests get a 503, the
running batch has a couple of seconds to finish before it is interrupted, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from diffcli.errors import UsageError
from diffcli.plan.text import escape_control
from diffcli.serve.limits import GRACE_S, Limits

SHUTDOWN_TIMEOUT_S = 5
CONNECTIONS = 1024  # open connections beyond --max-queue before uvicorn itself answers a plain-text 503


@dataclasses.dataclass
class Options:
    """The `diffcli serve` flags that are not preset keys."""

    host: str = "127.0.0.1"
    port: int = 7860
    limits: Limits = dataclasses.field(default_factory=Limits)
    key: str | None = None
    quiet: bool = False


def bind(host: str, port: int) -> socket.socket:
    """The listening address, bound now (not yet listening); a busy or bad address is a usage error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OverflowError) as err:
        raise UsageError(f"--host {escape_control(host)}: cannot resolve ({err})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        why = "the port is in use" if err.errno == errno.EADDRINUSE else (err.strerror or type(err).__name__)
        raise UsageError(f"cannot bind {escape_control(host)}:{port}: {why}", hint="pick another --port") from None
    sock.set_inheritable(True)
    return sock


def serve(preset: Any, options: Options, note: Callable[[str], None]) -> None:
    """Bind, load, warm up, serve until SIGTERM/SIGINT, and release everything."""
    import uvicorn

    from diffcli.plan.items import PromptLine
    from diffcli.run.commands import plan_run, verify_schedules
    from diffcli.serve.app import create_app
    from diffcli.serve.door import Door
    from diffcli.serve.engine import Engine
    from diffcli.serve.service import Service
    from diffcli.serve.worker import Worker

    sock = bind(options.host, options.port)
    with sock, _private_folder() as init_dir:
        plan = plan_run(preset.replace(num_images=1, seed=0), "txt2img", [PromptLine(prompt="warm-up")])
        verify_schedules(plan)
        facts, items = plan.facts, plan.items
        engine = Engine(preset, facts)
        note(f"loading {facts.name} ...")
        engine.load()
        engine.warm_up(items[0])
        from diffcli.plan.schedulers import label_for

        model_id = preset.name or facts.name
        service = Service(door=Door(preset, facts, options.limits, engine.compatible(), init_dir),
                          worker=None, limits=options.limits, key=options.key,  # type: ignore[arg-type]
                          model_id=model_id, model_names=(model_id, facts.name),
                          output=Path(preset.output or "outputs/serve"), quiet=options.quiet,
                          default_sampler=label_for(engine.loaded.pipe.scheduler))
        service.worker = Worker(engine, options.limits, service.log)
        service.worker.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        config = uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
                                limit_concurrency=CONNECTIONS + options.limits.max_queue, server_header=False)
        server = _Server(config, on_exit=lambda: service.worker.stop(GRACE_S),
                         on_ready=lambda: note(f"serving {model_id} on http://{shown}:{port} "
                                               f"(max batch {options.limits.max_batch}, queue "
                                               f"{options.limits.max_queue}{', API key required' if options.key else ''})"))
        try:
            server.run(sockets=[sock])
        finally:
            service.worker.stop(0.0)
            service.worker.join(GRACE_S + SHUTDOWN_TIMEOUT_S)
        note("stopped")


@contextlib.contextmanager
def _private_folder() -> Iterator[Path]:
    """A folder only this process reads (init images of img2img requests), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="diffcli-serve-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that tells the worker to stop on the first signal and exits 0 after a clean
        shutdown (uvicorn would re-raise the signal; a second SIGINT still forces the exit)."""

        def __init__(self, config: Any, on_exit: Callable[[], None], on_ready: Callable[[], None]) -> None:
            super().__init__(config)
            self.on_exit = on_exit
            self.on_ready = on_ready

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            if not self.should_exit:  # not from the handler itself: the worker's lock may be held right here
                threading.Thread(target=self.on_exit, name="diffcli-stop", daemon=True).start()
            self.should_exit = True

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                self.on_ready()

    return Server


def _Server(config: Any, on_exit: Callable[[], None], on_ready: Callable[[], None]) -> Any:
    return _server_class()(config, on_exit, on_ready)
