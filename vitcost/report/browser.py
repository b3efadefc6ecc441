"""Headless Chromium, offline: render a report's DOM after its scripts ran, or take a screenshot.

Every run gets a fresh, empty profile directory and has no network: host names resolve to nothing
and all traffic is sent to a proxy on a port where nothing listens. Chromium is found on PATH
(`chromium`, `chromium-browser`, `google-chrome`, ...) or named by the VITCOST_CHROMIUM variable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vitcost.errors import VitcostError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Quiet, sandbox-free (CI containers run as root), GPU-free headless mode.
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio")
# No network: every host name fails to resolve, and anything that gets past that goes to a proxy
# on the discard port, where nothing listens.
OFFLINE_FLAGS = ('--host-resolver-rules=MAP * ~NOTFOUND', "--proxy-server=127.0.0.1:9",
                 "--proxy-bypass-list=<-loopback>")
# Simulated time the page may use to run its scripts before the DOM is dumped or the screenshot taken.
VIRTUAL_TIME_MS = 15000
TIMEOUT_S = 180


def find_chromium() -> str | None:
    """The Chromium/Chrome executable, or None."""
    named = os.environ.get("VITCOST_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class BrowserRun:
    """What one headless run produced: stdout (the DOM for --dump-dom), the console messages
    Chromium logged, and its exit status."""

    stdout: str
    console: list[str]
    returncode: int


def run_chromium(page: Path, *extra: str, timeout: float = TIMEOUT_S) -> BrowserRun:
    """Open `page` (a local file) in headless, offline Chromium with `extra` flags."""
    exe = find_chromium()
    if exe is None:
        raise VitcostError("headless Chromium was not found; install it (e.g. `apt-get install chromium`) "
                           "or name it in VITCOST_CHROMIUM.")
    with tempfile.TemporaryDirectory(prefix="vitcost-chromium-") as profile:
        cmd = [exe, *BASE_FLAGS, *OFFLINE_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               f"--virtual-time-budget={VIRTUAL_TIME_MS}", *extra, Path(page).resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise VitcostError(f"headless Chromium did not finish within {timeout:.0f} s.") from None
        except OSError as e:
            raise VitcostError(f"cannot run {exe}: {e.strerror or e}.") from None
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserRun(proc.stdout, console, proc.returncode)


def dump_dom(page: Path) -> BrowserRun:
    """The page's DOM as serialised after its scripts ran."""
    return run_chromium(page, "--dump-dom")


def screenshot(page: Path, width: int, height: int) -> bytes:
    """A PNG of the top `width` x `height` pixels of `page`."""
    with tempfile.TemporaryDirectory(prefix="vitcost-shot-") as tmp:
        out = Path(tmp) / "shot.png"
        run = run_chromium(page, f"--screenshot={out}", f"--window-size={width},{height}",
                           "--force-device-scale-factor=1")
        if not out.is_file() or out.stat().st_size == 0:
            raise VitcostError(f"headless Chromium wrote no screenshot (exit status {run.returncode}).")
        return out.read_bytes()
