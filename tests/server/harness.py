"""A real vecdb gRPC server for tests: in-process on its own event loop thread (fast), or as a
subprocess (for SIGKILL / SIGTERM), always on 127.0.0.1 with an OS-chosen port."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from vecdb.server.app import ServerThread
from vecdb.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]


class InProcessServer(ServerThread):
    """``with InProcessServer(data=...) as s: Client(s.address)``; drains on exit."""

    def __init__(self, **settings):
        settings.setdefault("port", 0)
        super().__init__(ServerConfig(**settings))

    def stop(self, grace: float = 5.0) -> None:
        super().stop(grace)


class SubprocessServer:
    """``python -m vecdb.server.app`` in a child process; ``address`` from its first line."""

    def __init__(self, data: Path, *args: str, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = str(ROOT)
        self.log_path = Path(data).parent / f"{Path(data).name}-server.log"
        self._log = open(self.log_path, "a")     # a file, not a pipe: a full pipe would block it
        self.proc = subprocess.Popen([sys.executable, "-m", "vecdb", "serve", "--data", str(data),
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
