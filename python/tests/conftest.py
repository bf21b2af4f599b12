"""Fixtures of the parametrised suite: each test runs against ``omv.Camera``
and against the stock ``openmv.camera.Camera`` (``openmv==1.0.7``), both
driving an ``omv-sim --pty`` process.

Environment:

* ``OMV_SIM``: the omv-sim binary (default: ``target/release/omv-sim`` of
  this repository; ``cargo build --release -p omv-sim`` builds it);
* ``OMV_REQUIRE_STOCK=1``: fail instead of skipping the stock half when
  ``openmv`` is not importable (``.ci/run`` sets it).
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
# The stock Camera's test subclass, shared with the interop test.
sys.path.insert(0, str(REPO / "tests" / "interop"))
from stock_resync import resyncing  # noqa: E402
START_TIMEOUT = 10.0


def sim_binary() -> str:
    path = os.environ.get("OMV_SIM") or str(REPO / "target" / "release" / "omv-sim")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not an executable: run `cargo build --release -p omv-sim` "
                    "or set OMV_SIM", pytrace=False)
    return path


class Sim:
    """An omv-sim process serving on a pseudo-terminal (or UDP)."""

    def __init__(self, *args: str, udp: bool = False) -> None:
        self.log = tempfile.TemporaryFile(mode="w+b")
        serve = ["--udp", "127.0.0.1:0"] if udp else ["--pty"]
        self.argv = [sim_binary(), *serve, "--python", sys.executable, *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        self.path = self._first_line()

    def _first_line(self) -> str:
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail(f"{' '.join(self.argv)}: nothing on stdout within {START_TIMEOUT}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    pytest.fail(f"{' '.join(self.argv)} exited early: {self.stderr_tail()}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode().strip()

    def stderr_tail(self, lines: int = 20) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()
        self.log.close()


@dataclass
class Impl:
    """One implementation of the stock API: its Camera class and exceptions."""

    name: str
    Camera: Any
    OMVException: Any
    TimeoutException: Any
    ResyncException: Any

    @property
    def stock(self) -> bool:
        return self.name == "openmv"


def load_impl(name: str) -> Impl:
    if name == "omv":
        import omv

        return Impl("omv", omv.Camera, omv.OMVException, omv.TimeoutException,
                    omv.ResyncException)
    try:
        camera = importlib.import_module("openmv.camera")
        exc = importlib.import_module("openmv.exceptions")
    except ImportError as e:
        if os.environ.get("OMV_REQUIRE_STOCK"):
            pytest.fail(f"the stock SDK is required (OMV_REQUIRE_STOCK) but: {e}")
        pytest.skip(f"stock openmv not installed: {e}")
    # Resyncing after SOFT_REBOOT as the OpenMV IDE does: the stock 1.0.7
    # package stalls after a script ends otherwise (see stock_resync.py).
    return Impl("openmv", resyncing(camera.Camera, exc.OMVException), exc.OMVException,
                exc.TimeoutException,
                exc.ResyncException)


@pytest.fixture(params=["omv", "openmv"])
def impl(request: Any) -> Impl:
    """The implementation under test (the suite runs once per value)."""
    return load_impl(request.param)


def recording(base: Any) -> Any:
    """A subclass of `base` whose _handle_event records every event (and
    calls super, keeping the default behaviour)."""

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            self.events: List[Tuple[int, int]] = []
            super().__init__(*a, **k)

        def _handle_event(self, channel_id: int, event: int) -> None:
            self.events.append((channel_id, event))
            super()._handle_event(channel_id, event)

        def seen(self, channel_id: int, event: int) -> bool:
            return (channel_id, event) in self.events

    return Recording


class Session:
    """Starts sims and connects cameras; everything is closed at teardown."""

    def __init__(self, impl: Impl) -> None:
        self.impl = impl
        self.sims: List[Sim] = []
        self.cams: List[Any] = []

    def sim(self, *args: str, udp: bool = False) -> Sim:
        s = Sim(*args, udp=udp)
        self.sims.append(s)
        return s

    def camera(self, sim: Sim, cls: Any = None, connect: bool = True, **kwargs: Any) -> Any:
        cam = (cls or recording(self.impl.Camera))(sim.path, **kwargs)
        self.cams.append(cam)
        if connect:
            cam.connect()
        return cam

    def close(self, failed: bool) -> None:
        for cam in self.cams:
            try:
                cam.disconnect()
            except Exception:  # noqa: BLE001 - teardown
                pass
        for s in self.sims:
            if failed:
                sys.stderr.write(f"--- omv-sim stderr ---\n{s.stderr_tail()}\n")
            s.stop()


@pytest.fixture
def session(impl: Impl, request: Any) -> Any:
    s = Session(impl)
    yield s
    rep = getattr(request.node, "rep_call", None)
    s.close(failed=bool(rep and rep.failed))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def until(timeout: float, what: str, fn: Callable[[], Any], interval: float = 0.02) -> Any:
    """Calls fn() until it returns something truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pattern(size: int, start: int = 0) -> bytes:
    """The user channels' content: byte i == (start + i) % 251."""
    period = bytes((start + i) % 251 for i in range(251))
    return (period * (size // 251 + 1))[:size]


def read_output(cam: Any, want: str, timeout: float) -> str:
    text = ""

    def poll() -> bool:
        nonlocal text
        chunk = cam.read_stdout()
        if chunk:
            text += chunk
        return want in text

    until(timeout, f"{want!r} in the script output", poll)
    return text


def read_frame(cam: Any, fmt: int, timeout: float) -> Any:
    def poll() -> Optional[Any]:
        f = cam.read_frame()
        return f if f and f["format"] == fmt else None

    return until(timeout, f"a frame in format {fmt:#010x}", poll)
