"""The set-up scripts tell the truth: the backports source is added only when no configured apt source
has that suite (one-line .list files, deb822 .sources, options in brackets), and set-up says what it does."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "install-vulkan.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None,
                                reason="needs bash and awk")


def configured(tmp_path: pathlib.Path, suite: str, files: dict[str, str]) -> bool:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    proc = subprocess.run(["bash", str(SCRIPT), "--check-suite", suite],
                          env={"APT_ETC": str(etc), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


@pytest.mark.parametrize("files, expected", [
    ({}, False),
    ({"sources.list": "deb http://mirror.invalid/debian bookworm main\n"}, False),
    ({"sources.list": "deb http://mirror.invalid/debian bookworm-backports main\n"}, True),
    ({"sources.list": "# deb http://mirror.invalid/debian bookworm-backports main\n"}, False),
    ({"sources.list.d/bp.list": "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m.invalid/debian "
                                "bookworm-backports main contrib\n"}, True),
    ({"sources.list.d/bp.list": "deb [ trusted=yes ] http://m.invalid/debian bookworm-backports main\n"}, True),
    ({"sources.list.d/debian.sources": "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm "
                                       "bookworm-updates\nComponents: main\n"}, False),
    ({"sources.list.d/debian.sources": "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm "
                                       "bookworm-backports\nComponents: main\n"}, True),
    ({"sources.list.d/x.sources": "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm-backports\n"}, True),
    ({"sources.list.d/bp.list.disabled": "deb http://m.invalid/debian bookworm-backports main\n"}, False),
])
def test_backports_added_only_when_no_source_has_the_suite(tmp_path, files, expected):
    assert configured(tmp_path, "bookworm-backports", files) is expected


def test_setup_prints_its_steps_and_is_not_silenced():
    text = (ROOT / ".ci" / "setup").read_text()
    assert " -qq" not in text and "pip install -q" not in text, "long steps must show their progress"
    assert text.count('step "') >= 5 and "chromium" in text
