"""A real vecdb gRPC server for tests: in-process on its own event loop thread (fast), or as a
subprocess (for SIGKILL / SIGTERM), always on 127.0.0.1 with an OS-chosen port."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from vecdb.server.app import VecdbServer
from vecdb.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]


class InProcessServer:
    """``with InProcessServer(data=...) as s: Client(s.address)``; stops (drains) on exit."""

    def __init__(self, **settings):
        settings.setdefault("port", 0)
        self.config = ServerConfig(**settings)
        self.server = VecdbServer(self.config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self.call(self.server.start())
        self.address = f"127.0.0.1:{self.port}"

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def database(self):
        return self.server.gate.database

    def stop(self, grace: float = 5.0) -> None:
        if self._loop.is_running():
            self.call(self.server.stop(grace))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> "InProcessServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SubprocessServer:
    """``python -m vecdb.server.app`` in a child process; ``address`` from its first line."""

    def __init__(self, data: Path, *args: str, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = str(ROOT)
        self.log_path = Path(data).parent / f"{Path(data).name}-server.log"
        self._log = open(self.log_path, "a")     # a file, not a pipe: a full pipe would block it
        self.proc = subprocess.Popen([sys.executable, "-m", "vecdb.server.app", "--data", str(data),
                                      "--port", "0", *args], stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=full_env, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: {line!r} {self.log()}")
        self.address = line.split()[-1]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> "SubprocessServer":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc.stdout.close()
        self._log.close()
