"""Open a page in Debian's headless chromium: console messages, images decoded, a screenshot.

Used by the report tests; ``CHROMIUM`` is None where no chromium is installed (.ci/setup installs it).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

CHROMIUM = next((p for p in (os.environ.get("EDGEQ_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000"]
# Written into <body> after the load event: how many images decoded to a real size, of how many.
PROBE = ('<script>window.addEventListener("load", () => { const imgs = [...document.images]; '
         'document.body.setAttribute("data-images-ok", imgs.filter(i => i.complete && i.naturalWidth > 0).length '
         '+ "/" + imgs.length); });</script>')
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]?\s*(.*)")


@dataclasses.dataclass(frozen=True)
class PageLoad:
    dom: str
    console: tuple[str, ...]   # every console message (errors, uncaught exceptions, warnings)
    images_ok: int
    images: int


def open_page(html_path: pathlib.Path, timeout: float = 90.0) -> PageLoad:
    """Load a copy of the page with the image probe added, in headless chromium; return what it showed."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = pathlib.Path(tmp) / "probe.html"
        probe.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        proc = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "HOME": tmp})
    console = tuple(m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line)))
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', proc.stdout)
    ok, total = (int(m.group(1)), int(m.group(2))) if m else (0, -1)
    return PageLoad(proc.stdout, console, ok, total)


def screenshot(html_path: pathlib.Path, out_png: pathlib.Path, size: str = "1200,3000",
               timeout: float = 90.0) -> pathlib.Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([CHROMIUM, *FLAGS, f"--window-size={size}", f"--screenshot={out_png}", html_path.as_uri()],
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, "HOME": tmp}, check=True)
    return out_png
