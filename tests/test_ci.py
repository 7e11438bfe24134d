"""The CI scripts' own checks: a machine that cannot hold the suite is told so, with numbers."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import types
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


# The shared virtualenv's health check and rebuild (noxfile.py), on small fake virtualenvs.

ROOT = SCRIPT.parent.parent


@pytest.fixture(scope="module")
def noxfile() -> types.ModuleType:
    """noxfile.py, imported beside a stand-in for what it touches of nox (the suite's own
    virtualenv, where the tests run, has no nox)."""
    nox = types.ModuleType("nox")
    nox.options = types.SimpleNamespace()
    nox.session = lambda func=None, **_: func or (lambda f: f)
    nox.Session = object
    nox.virtualenv = types.SimpleNamespace(PassthroughEnv=type("PassthroughEnv", (), {}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "nox", nox)
        spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _fake_venv(noxfile: types.ModuleType, venv: Path, *, root: Path = ROOT,
               code: dict[str, str] | None = None, missing: tuple[str, ...] = ()) -> Path:
    """A real virtualenv without pip whose packages are empty stand-ins (`code`: a package's
    __init__.py instead), with `root` installed as the suite, as an editable install does."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for name in (*noxfile.IMPORTS, *noxfile.DATA_PACKAGES):
        if name not in missing:
            (site / name).mkdir()
            (site / name / "__init__.py").write_text((code or {}).get(name, ""))
    (site / "checkout.pth").write_text(f"{root}\n")
    return venv


def test_healthy_fake_venv_is_healthy(noxfile: types.ModuleType, tmp_path: Path) -> None:
    assert noxfile.venv_problem(_fake_venv(noxfile, tmp_path / "venv")) is None


def test_venv_without_its_python_says_so(noxfile: types.ModuleType, tmp_path: Path) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv")
    (venv / "bin" / "python").unlink()
    assert noxfile.venv_problem(venv) == f"its interpreter {venv}/bin/python is missing"


def test_venv_whose_import_fails_names_it(noxfile: types.ModuleType, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv",
                      code={"timm": "raise ImportError('broken\\nsecond line')"})
    assert noxfile.venv_problem(venv) == "import timm failed (ImportError: broken)"
    venv = _fake_venv(noxfile, tmp_path / "gone", missing=("fvcore",))
    (tmp_path / "elsewhere" / "fvcore").mkdir(parents=True)  # found outside the venv: no matter
    (tmp_path / "elsewhere" / "fvcore" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    assert noxfile.venv_problem(venv) == ("import fvcore failed (ModuleNotFoundError: No module "
                                          "named 'fvcore')")


def test_venv_whose_python_crashes_says_where(noxfile: types.ModuleType, tmp_path: Path) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv", code={"torch": "import os\nos.abort()"})
    assert noxfile.venv_problem(venv) == (f"its interpreter {venv}/bin/python exited with -6 "
                                          "while importing torch")
    py = venv / "bin" / "python"
    py.unlink()
    py.write_text("#!/bin/sh\necho 'cannot execute binary file' >&2\nexit 126\n")
    py.chmod(0o755)
    assert noxfile.venv_problem(venv) == (f"its interpreter {py} exited with 126: cannot "
                                          "execute binary file")
    py.chmod(0o644)
    assert noxfile.venv_problem(venv) == f"its interpreter {py} does not run (Permission denied)"


def test_venv_without_the_data_or_this_checkout_says_so(noxfile: types.ModuleType,
                                                        tmp_path: Path) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv", missing=("mlxtend",))
    assert noxfile.venv_problem(venv) == "mlxtend is not installed"
    other = tmp_path / "other-checkout"
    (other / "suite").mkdir(parents=True)
    (other / "suite" / "__init__.py").write_text("")
    venv = _fake_venv(noxfile, tmp_path / "elsewhere", root=other)
    assert noxfile.venv_problem(venv) == (f"its `suite` is {other / 'suite'}, not this "
                                          "checkout's")
    for pth in venv.glob("lib/*/site-packages/checkout.pth"):
        pth.unlink()
    assert noxfile.venv_problem(venv) == "the suite is not installed (no `suite` package)"


def test_plan_trusts_the_stamp_only_beside_a_healthy_venv(noxfile: types.ModuleType,
                                                          tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert noxfile.plan(venv, "abc") == ("build", "not built yet")
    _fake_venv(noxfile, venv)
    assert noxfile.plan(venv, "abc") == ("build", "no .installed stamp (its last build did "
                                         "not finish)")
    (venv / ".installed").write_text("abc")
    assert noxfile.plan(venv, "abc") == ("use", "")
    assert noxfile.plan(venv, "def") == ("update", "pyproject.toml or ci/constraints.txt changed")
    (venv / "bin" / "python").unlink()
    assert noxfile.plan(venv, "abc") == ("build", f"its interpreter {venv}/bin/python is missing")


class _Session:
    """What _install asks of a nox session; `python -m venv` makes a healthy fake virtualenv."""

    virtualenv = None

    def __init__(self, noxfile: types.ModuleType) -> None:
        self.noxfile, self.runs, self.said = noxfile, [], []

    def run(self, *args: str, external: bool = False) -> None:
        assert external
        self.runs.append(args)
        if args[1:3] == ("-m", "venv"):
            _fake_venv(self.noxfile, Path(args[3]))

    def warn(self, message: str) -> None:
        self.said.append(message)

    log = warn

    def error(self, message: str) -> None:
        raise AssertionError(message)


def _steps(runs: list[tuple[str, ...]]) -> list[str]:
    return ["disk-check" if "disk-check.sh" in " ".join(r) else
            "venv" if r[1:3] == ("-m", "venv") else
            f"pip {r[-1]}" if r[1:4] == ("-m", "pip", "install") else " ".join(r) for r in runs]


def test_broken_venv_is_removed_and_built_from_scratch(noxfile: types.ModuleType,
                                                       tmp_path: Path) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv", code={"torch": "raise ImportError('broken')"})
    (venv / ".installed").write_text("abc")
    (venv / "leftover").write_text("from the broken build")
    session = _Session(noxfile)
    assert noxfile._install(session, venv, "abc") == str(venv / "bin" / "python")
    assert session.said == [f"{venv}: import torch failed (ImportError: broken); removing it to "
                            "build it again from scratch"]
    assert not (venv / "leftover").exists()  # removed, not installed over
    assert _steps(session.runs) == ["disk-check", "venv", "pip torchvision==0.29.1",
                                    f"pip {noxfile.ROOT}[test,vision,track,slurm]",
                                    "pip mlxtend==0.25.0"]
    assert (venv / ".installed").read_text() == "abc"
    assert noxfile.venv_problem(venv) is None


def test_healthy_venv_is_used_updated_or_rebuilt_on_demand(noxfile: types.ModuleType,
                                                           tmp_path: Path) -> None:
    venv = _fake_venv(noxfile, tmp_path / "venv")
    (venv / ".installed").write_text("abc")
    (venv / "kept").write_text("")
    session = _Session(noxfile)
    noxfile._install(session, venv, "abc")
    assert (session.runs, session.said) == ([], [])
    noxfile._install(session, venv, "def")  # requirements changed: pip installs over it
    assert _steps(session.runs)[0] == "pip torchvision==0.29.1" and (venv / "kept").exists()
    assert (venv / ".installed").read_text() == "def"
    session = _Session(noxfile)
    noxfile._install(session, venv, "def", rebuild=True)  # nox -s rebuild
    assert session.said == [f"{venv}: asked to (nox -s rebuild); removing it to build it again "
                            "from scratch"]
    assert _steps(session.runs)[:2] == ["disk-check", "venv"] and not (venv / "kept").exists()


def test_a_failed_build_leaves_no_stamp(noxfile: types.ModuleType, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    session = _Session(noxfile)
    session.run = lambda *args, external: session.runs.append(args)  # pip "installs" nothing
    with pytest.raises(AssertionError, match=f"{venv} was just installed, yet its interpreter"):
        noxfile._install(session, venv, "abc")
    assert session.said == [f"{venv}: not built yet; building it (about 6 GB, a few minutes)"]
    assert not (venv / ".installed").exists()


def test_the_documented_rebuild_command_exists(noxfile: types.ModuleType) -> None:
    assert "nox -s rebuild " in noxfile.__doc__
    assert noxfile.rebuild.__doc__.startswith("Remove the shared virtualenv")
