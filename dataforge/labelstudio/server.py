"""Run a local Label Studio server (from ``.venv-labelstudio``) on 127.0.0.1, as a subprocess.

It starts from a copy of the migrated template database that ``./setup.sh`` builds, so it is up in
seconds, with a clean environment (Label Studio reads bare ``HOST``/``PORT``/... variables) and
with telemetry and update checks off (:meth:`LabelStudioServer.env` says why each variable is set).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from dataforge.doctor import label_studio_binary
from dataforge.errors import ComponentError

CREDENTIALS = "credentials.json"


def credentials(workdir: Path) -> dict[str, str]:
    """The server's admin user, password and API token, made once per data directory (random) and
    kept in ``workdir/credentials.json``, readable by its owner alone. Label Studio sets a user's
    password and token only when it creates the user, at the first start on an empty database, so
    every later start must use the same ones: a fresh token each start would not be the server's."""
    import json
    import secrets

    path = Path(workdir) / CREDENTIALS
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if all(isinstance(data.get(k), str) for k in ("username", "password", "token")):
            return dict(data)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    data = {
        "username": "admin@example.com",
        "password": secrets.token_urlsafe(18),
        "token": secrets.token_hex(20),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return data


def remember(workdir: Path, **values: str) -> None:
    """Add ``values`` (the URL, the document root of the last start) to ``credentials.json``."""
    import json

    path = Path(workdir) / CREDENTIALS
    data = {**json.loads(path.read_text(encoding="utf-8")), **values}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabelStudioServer:
    def __init__(
        self,
        workdir: Path,
        *,
        files_root: Path,
        port: int | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        """``username``, ``password`` and ``token`` default to the data directory's own
        (:func:`credentials`: made once, random, kept beside the database)."""
        self.workdir = Path(workdir)
        self.files_root = Path(files_root).resolve()
        self.port = port or free_port()
        kept = credentials(self.workdir) if None in (token, username, password) else {}
        self.token = token or kept["token"]
        self.username = username or kept["username"]
        self.password = password or kept["password"]
        self.startup_timeout = startup_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            # nothing inherited: Label Studio reads bare HOST, PORT, ... from the environment
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),  # it writes ~/.local/share/label-studio otherwise
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.workdir / "data"),
            "DJANGO_DB": "sqlite",
            # the store's images are served from disk, not uploaded
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # a fixed token the SDK can use at once
            # offline and private: no update check, no analytics, no error reports
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }

    def start(self) -> LabelStudioServer:
        binary = label_studio_binary()
        if binary is None or not binary.exists():
            raise ComponentError(
                "no Label Studio server found", hint="run ./setup.sh (it builds .venv-labelstudio/)"
            )
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        template = binary.parent.parent / "template" / "label_studio.sqlite3"
        if template.is_file() and not (data / "label_studio.sqlite3").exists():
            shutil.copy(template, data / "label_studio.sqlite3")
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workdir,
        )
        try:
            self._wait_until_ready()
        except BaseException:  # Ctrl-C or a failed start: never leave the server running
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise ComponentError(
                    f"Label Studio exited with {self.proc.returncode}; see {self.workdir / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"Label Studio did not answer on {self.url} within {self.startup_timeout:.0f} s"
                )
            time.sleep(0.25)
        if f"127.0.0.1:{self.port}/".encode() not in (self.workdir / "server.log").read_bytes():
            # Label Studio silently moves to another port when its port is taken
            raise ComponentError(f"Label Studio did not start on port {self.port} (taken?)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_until_stopped(server: LabelStudioServer, on_ready: Callable[[LabelStudioServer], None]) -> None:
    """Run ``server`` until Ctrl-C or SIGTERM (or until it exits by itself); ``on_ready`` is called
    once it answers. Ctrl-C works even when this process was started with SIGINT ignored (what a
    shell does to background jobs, and Python then installs no KeyboardInterrupt handler)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    with server:
        on_ready(server)
        try:
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
