"""The CI scripts' own checks: a machine that cannot hold the suite is told so, with numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "ci" / "disk-check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("df") is None,
                                reason="needs bash and df")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_disk_check_passes_with_room(tmp_path: Path) -> None:
    out = _run("0", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"GiB free under {tmp_path.resolve()} (0 GiB needed)" in out.stdout


def test_disk_check_refuses_without_room_and_says_how_much(tmp_path: Path) -> None:
    need = shutil.disk_usage(tmp_path).free // 2**30 + 1000
    out = _run(str(need), str(tmp_path))
    assert out.returncode == 1
    said = re.search(r"(\d+) GiB free under (\S+), (\d+) GiB needed", out.stderr)
    assert said, out.stderr
    assert abs(int(said[1]) - (need - 1000)) <= 1  # df and statvfs, read a moment apart
    assert (said[2], int(said[3])) == (str(tmp_path.resolve()), need)
    assert "virtualenv is about 6 GB" in out.stderr


def test_disk_check_without_arguments_says_its_usage() -> None:
    out = _run()
    assert out.returncode != 0
    assert "usage: ci/disk-check.sh GIB_NEEDED [DIR]" in out.stderr
