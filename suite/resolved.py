"""Definitions as files and as records: where the definition files are (`definition_files`),
their decision rules read without building anything (`gate_rules`, what the judge needs), and
how two resolved definitions recorded in run manifests compare (`definition_difference`, with
the defaults of keys the schema gained since a run was recorded). Imports no torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from suite.results import first_difference
from suite.spec import (
    REQUIRED,
    Benchmark,
    DataSpec,
    EvalSpec,
    GateSpec,
    Optim,
    SpecError,
    load,
)

BUILTIN = Path(__file__).resolve().parent / "definitions"


def definition_files(paths: list[str | Path] | None = None) -> list[Path]:
    """The definition files under `paths` (files or folders of *.toml; default: the built-in
    registry, suite/definitions). Raises SpecError for a missing path or an empty folder."""
    files: list[Path] = []
    for p in [Path(x) for x in (paths or [BUILTIN])]:
        if p.is_dir():
            found = sorted(p.glob("*.toml"))
            if not found:
                raise SpecError(p, "(folder)", "holds no *.toml definition")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise SpecError(p, "(file)", "no such file or folder")
    return files


def parse_definitions(paths: list[str | Path] | None = None) -> dict[str, Benchmark]:
    """Every definition under `paths` parsed (spec.load), by benchmark name, without building
    anything: no family, no method, no torch. Raises SpecError for a definition that does not
    parse or a name defined twice."""
    out: dict[str, Benchmark] = {}
    for f in definition_files(paths):
        b = load(f)
        if b.name in out:
            raise SpecError(f, "name", f"benchmark {b.name!r} is already defined in "
                            f"{out[b.name].path}")
        out[b.name] = b
    return out


def gate_rules(paths: list[str | Path] | None = None) -> dict[str, GateSpec]:
    """Each definition's decision rules ([gate]) by benchmark name: what the judge needs."""
    return {name: b.gate for name, b in parse_definitions(paths).items()}


def defaults() -> dict[str, Any]:
    """The default of every optional key of a resolved definition's scale, nested as in
    `Benchmark.resolved`: a key added to the schema after a run was recorded reads, in that
    run's definition, as this value (the gate compares like with like through it)."""
    def of(cls: type) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not REQUIRED:
                out[f.name] = f.default
            elif f.default_factory is not REQUIRED:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return out

    return {"scale": {"data": of(DataSpec), "train": of(Optim), "eval": of(EvalSpec),
                      "seeds": 1}, "arm": {"train": {}}}


def _with_defaults(defn: Any, default: Any) -> Any:
    """`defn` with every key of `default` it lacks added at its default value."""
    if not (isinstance(defn, dict) and isinstance(default, dict)):
        return defn
    out = dict(defn)
    for k, v in default.items():
        out[k] = _with_defaults(out[k], v) if k in out else v
    return out


def definition_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first key path where two resolved definitions (manifest["definition"]) differ, or
    None; the file they came from is not compared, and a key one of them lacks counts as its
    default (`defaults`)."""
    a, b = (_with_defaults({k: v for k, v in d.items() if k != "file"}, defaults())
            for d in (a, b))
    return first_difference(a, b)
