"""The committed tuning record of a definition at a scale (tuning.json, written by `tune`): where
it lives, whether it still fits the definition, the definition with each arm's chosen values,
and what each run's manifest says of its tuning. Imports no torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from suite.protocol import edge_steps, split_name, with_values
from suite.spec import Benchmark, SpecError

FILE = "tuning.json"
TUNING_ROOT = Path("results") / "tuning"  # tune's default --out root, and run's --tuning


def tuning_path(root: Path, scale: str, bench: str) -> Path:
    """Where `tune` writes, and `run` reads, one benchmark's tuning at one scale."""
    return Path(root) / scale / bench / FILE


def snapshot(bench: Benchmark, scale: str) -> dict[str, Any]:
    """What a tuning was made for: the scale as resolved (its reported seeds aside, which no
    trial reads) and every arm. A record whose snapshot differs is stale."""
    s = {k: v for k, v in dataclasses.asdict(bench.scale(scale)).items()
         if k not in ("seeds", "origin")}
    arms = {a: dataclasses.asdict(arm) for a, arm in bench.arms.items()}
    return json.loads(json.dumps({"scale": s, "arms": arms}))


def _first_difference(a: Any, b: Any, at: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if (d := _first_difference(a.get(k), b.get(k), f"{at}.{k}" if at else k)):
                return d
        return None
    return None if a == b else at


def _check_record(rec: Any, bench: Benchmark, scale: str, path: Path) -> dict[str, dict]:
    """The record's chosen values, once each is one of its arm's trials (an inheriting arm:
    its parent's), every trial lies in its arm's declared space (or one edge step beyond it),
    every arm has a choice and no other arm does, and the record was made for this definition.
    Raises SpecError naming tuning.json and the key."""
    t = bench.tuning
    for key in ("chosen", "trials"):
        if not isinstance(rec.get(key), dict):
            raise SpecError(path, key, "missing or not a table of arm -> "
                            + ("values" if key == "chosen" else "trial names"),
                            f"python -m suite tune {bench.name} --scale {scale} writes it")
    chosen = rec["chosen"]
    if not isinstance(rec.get("snapshot"), dict):
        raise SpecError(path, "snapshot", "missing: a record from before tuning records kept "
                        f"what they were made for; re-run python -m suite tune {bench.name} "
                        f"--scale {scale}")
    if (key := _first_difference(rec["snapshot"], snapshot(bench, scale))) is not None:
        raise SpecError(path, f"snapshot.{key}", "the definition changed since this tuning "
                        f"({bench.path}); re-run python -m suite tune {bench.name} --scale "
                        f"{scale}, or run --untuned")
    if extra := sorted(set(chosen) - set(bench.arms)):
        raise SpecError(path, f"chosen.{extra[0]}", "not an arm of the definition",
                        ", ".join(bench.arms))
    for arm in bench.arms:
        want = chosen.get(t.inherit.get(arm, arm))
        tried = _tried(rec["trials"], t.inherit.get(arm, arm), t.spaces, path)
        if chosen.get(arm) != want or want not in tried:
            raise SpecError(path, f"chosen.{arm}", f"{chosen.get(arm)!r} is none of the "
                            "values its trials tried", ", ".join(map(str, tried)) or "none")
    return chosen


def _tried(trials: dict, arm: str, spaces: dict[str, dict], path: Path) -> list[dict]:
    """The values of `arm`'s trials in tuning.json, each checked against the arm's declared
    space and EDGE_RULE's one step beyond an edge. Raises SpecError naming trials.ARM."""
    names, space = trials.get(arm, []), spaces.get(arm, {})
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SpecError(path, f"trials.{arm}", f"{names!r} is not a list of trial names",
                        f"names such as {arm}@lr=0.001")
    allowed = {k: set(v) | {b for c in v for _, b in edge_steps({k: v}, {k: c})}
               for k, v in space.items()}
    out = []
    for name in names:
        try:
            parent, values = split_name(name)
        except ValueError as e:
            raise SpecError(path, f"trials.{arm}", f"{name!r}: {e}",
                            f"names such as {arm}@lr=0.001") from None
        bad = [k for k, v in values.items() if v not in allowed.get(k, ())]
        if parent != arm or set(values) != set(space) or bad:
            raise SpecError(path, f"trials.{arm}", f"{name!r} is not a trial of the declared "
                            f"space{f' ({bad[0]}={values[bad[0]]!r})' if bad else ''}",
                            "; ".join(f"{k}: {sorted(v, key=str)}" for k, v in allowed.items()))
        out.append(values)
    return out


def untuned(why: str) -> dict[str, Any]:
    return {"status": "untuned", "why": why}


def tuned(bench: Benchmark, scale: str, root: Path | None) -> tuple[Benchmark, dict[str, Any]]:
    """The definition with each arm's chosen values from `root`'s tuning.json of this scale, and
    the record every manifest keeps of it (status tuned or untuned, and why). `root` None:
    untuned (`--untuned`). A definition without [tuning], or not tuned at this scale, runs its
    own values. Raises SpecError naming tuning.json when it was made for another [tuning]."""
    t = bench.tuning
    if root is None:
        return bench, untuned("--untuned: the definition's own values")
    if t is None:
        return bench, untuned("the definition has no [tuning] table")
    if scale not in t.scales:
        return bench, untuned(f"not tuned at {scale} (tuning.scales = {list(t.scales)}): "
                              "the definition's values")
    path = tuning_path(root, scale, bench.name)
    if not path.is_file():
        return bench, untuned(f"no {path} yet (python -m suite tune {bench.name} --scale "
                              f"{scale})")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SpecError(path, "(file)", f"not a tuning record: {type(e).__name__}: {e}") \
            from None
    if not isinstance(rec, dict):
        raise SpecError(path, "(file)", "not a tuning record: a JSON object is")
    expect = {"benchmark": bench.name, "scale": scale, "trials_per_arm": t.trials,
              "pilot_seeds": list(t.pilot_seeds), "inherit": dict(t.inherit),
              "space": {a: {k: list(v) for k, v in s.items()} for a, s in t.spaces.items()}}
    for key, want in expect.items():
        if rec.get(key) != want:
            raise SpecError(path, key, f"{rec.get(key)!r} was tuned, the definition "
                            f"({bench.path}) now declares {want!r}; re-run python -m suite "
                            f"tune {bench.name} --scale {scale}, or run --untuned")
    chosen = _check_record(rec, bench, scale, path)
    applied = {a: {k: v for k, v in chosen[a].items() if k not in _differs(bench, a)}
               for a in bench.arms}
    arms = {a: with_values(arm, applied[a], a, str(path)) for a, arm in bench.arms.items()}
    return dataclasses.replace(bench, arms=arms), {
        "status": "tuned", "file": str(path), "commit": rec.get("commit"), "chosen": applied}


def _differs(bench: Benchmark, arm: str) -> set[str]:
    """The keys an inheriting ablation declares with a value other than its parent's: what
    makes it the ablation, which its parent's tuned values must not overwrite."""
    parent = (bench.tuning.inherit if bench.tuning else {}).get(arm)
    if parent is None:
        return set()
    a, p = bench.arms[arm], bench.arms[parent]
    return {k for k, v in a.options.items() if p.options.get(k, v) != v or k not in p.options} \
        | {k for k, v in a.train.items() if p.train.get(k) != v}


def kept(bench: Benchmark, chosen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per inheriting ablation, the tuned knobs it keeps at its own value (`ode-delta05`:
    delta=0.5 where its parent was tuned to another delta): what `tuned` leaves untouched,
    so that tuning.md says what the ablation ran with."""
    out = {}
    for arm, parent in (bench.tuning.inherit if bench.tuning else {}).items():
        a = bench.arms[arm]
        own = {k: a.options.get(k, a.train.get(k)) for k in sorted(_differs(bench, arm))
               if k in chosen.get(parent, {})}
        if own:
            out[arm] = own
    return out


def provenance(record: dict[str, Any], arm: str) -> dict[str, Any]:
    """What one run's manifest says of its tuning: tuned (its parent arm's chosen values, less
    those a variant sets itself, the file and the commit that chose them), a trial (its
    values), or untuned and why; a variant's own values under `variant`."""
    parent, own = split_name(arm)
    if record.get("status") == "tuned":  # a variant's own values replace the tuned ones
        out = {"status": "tuned", "file": record["file"], "commit": record["commit"],
               "values": {k: v for k, v in record["chosen"].get(parent, {}).items()
                          if k not in own}}
    else:
        out = dict(record)
    return out | ({"variant": own} if own else {})


__all__ = ["FILE", "TUNING_ROOT", "kept", "provenance", "snapshot", "tuned", "tuning_path",
           "untuned"]
