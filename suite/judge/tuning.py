"""Choosing each arm's values from its tuning trials (suite/protocol.py: RULE, EDGE_RULE) and
writing them down: tuning.json (what `suite run` trains with) and tuning.md (every trial).
Imports no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from suite.judge.intervals import Interval, mean_ci
from suite.protocol import EDGE_RULE, RULE, Tuning, fmt_value
from suite.results import ResultsError, Run, atomic_write, atomic_write_json
from suite.tuning_record import FILE

TIE = 1e-9  # nats: two trials closer than this are tied (RULE)


@dataclass
class Trial:
    """One point of an arm's space on the pilot seeds. `runs`: its run folders as read (None
    where a pilot seed has none yet); `extension`: a step beyond the edge (EDGE_RULE)."""

    arm: str
    name: str
    values: dict[str, Any]
    runs: list[Run | None] = field(default_factory=list)
    extension: bool = False

    @property
    def usable(self) -> bool:
        """Every pilot run completed with a finite final held-out loss below its start (RULE)."""
        return bool(self.runs) and all(r is not None and _fault(r) is None for r in self.runs)

    @property
    def loss(self) -> Interval:
        return mean_ci([_final(r) for r in self.runs if r is not None and r.complete])

    @property
    def status(self) -> str:
        """"completed" for a usable trial, else why not: each distinct fault of its runs."""
        if self.usable:
            return "completed"
        bad = ["not run" if r is None else _fault(r) for r in self.runs]
        return ", ".join(sorted({b for b in bad if b is not None})) or "not run"


def _fault(r: Run) -> str | None:
    """Why a pilot run is no result for the rule (RULE), or None: not completed, a non-finite
    final held-out loss, or a final loss not below the run's own start (it did not train; a
    summary without a finite start_heldout_loss cannot tell, and passes)."""
    final, start = _final(r), _number(r, "start_heldout_loss")
    if not r.complete or not math.isfinite(final):
        return r.status
    if math.isfinite(start) and not final < start:
        return f"did not train: final loss {'above' if final > start else 'equal to'} start"
    return None


def _number(r: Run, key: str) -> float:
    """The summary's `key` as a float; nan where it is missing or not a number."""
    v = (r.summary or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _final(r: Run) -> float:
    return _number(r, "final_heldout_loss")


def select(trials: list[Trial]) -> Trial | None:
    """RULE: the usable trial with the lowest mean final held-out loss; a tie within TIE goes to
    the trial listed first. None when no trial is usable (every one diverged, stopped, or did
    not train: a final loss not below its start)."""
    best = None
    for t in trials:
        if t.usable and (best is None or t.loss.mean < best.loss.mean - TIE):
            best = t
    return best


def trial_commits(trials: dict[str, list[Trial]]) -> str:
    """The commit(s) of the code the trial runs ran, as their manifests recorded them."""
    seen = sorted({f"{g.get('commit')}{'+dirty' if g.get('dirty') else ''}"
                   for ts in trials.values() for t in ts for r in t.runs if r is not None
                   for g in [r.manifest.get("environment", {}).get("git", {})]})
    return ", ".join(seen) or "unknown"


def record(tuning: Tuning, bench: str, path: str, scale: str, commit: str | None,
           trials: dict[str, list[Trial]], edges: dict[str, str],
           snapshot: dict[str, Any] | None = None, command: str = "") -> dict[str, Any]:
    """tuning.json: the chosen values per arm (inheriting arms: their parent's), the rule, the
    pilot seeds, the space it was chosen from, what was run, the commit(s) the trials ran,
    the command, and `snapshot`: the scale and arms it was tuned for (a record of another
    definition is refused). `tune` adds `kept` (tuning_record.kept): the knobs an inheriting
    ablation keeps at its own value. Raises ResultsError naming the arm and its trials when an arm
    has no usable trial (nothing may be chosen for it)."""
    chosen = {}
    for arm, ts in trials.items():
        best = select(ts)
        if best is None:
            raise ResultsError(f"{bench} at {scale}: no trial of arm {arm!r} completed and trained "
                               "(a final held-out loss below its start) on every pilot seed "
                               f"({'; '.join(f'{t.name}: {t.status}' for t in ts)}); "
                               "nothing can be chosen for it")
        chosen[arm] = best.values
    chosen |= {a: chosen[p] for a, p in tuning.inherit.items()}
    return {"benchmark": bench, "definition": path, "scale": scale, "commit": commit,
            "rule": RULE, "edge_rule": EDGE_RULE, "trials_per_arm": tuning.trials,
            "pilot_seeds": list(tuning.pilot_seeds),
            "space": {a: {k: list(v) for k, v in s.items()} for a, s in tuning.spaces.items()},
            "inherit": dict(tuning.inherit), "chosen": chosen, "edges": edges,
            "trials": {a: [t.name for t in ts] for a, ts in trials.items()},
            "snapshot": snapshot or {}, "command": command}


def render(rec: dict[str, Any], trials: dict[str, list[Trial]]) -> str:
    """tuning.md: every trial of every arm (values, mean final held-out loss with its 95%
    interval over the pilot seeds, status, chosen or not), then the rules."""
    rows = []
    for arm, ts in trials.items():
        best = select(ts)
        for t in ts:
            rows.append([arm, ", ".join(f"{k}={fmt_value(v)}" for k, v in t.values.items())
                         + (" (edge step)" if t.extension else ""),
                         t.loss.fmt(digits=4), t.status, "chosen" if t is best else ""])
    out = [f"# Tuning: {rec['benchmark']} at {rec['scale']}\n",
           f"Made by `{rec.get('command') or 'python -m suite tune ' + rec['benchmark']}`; "
           f"the trials ran at commit {rec['commit'] or 'unknown'}; the definition's [tuning] "
           f"table: {rec['definition']}.",
           f"{trial_counts(rec['trials_per_arm'], trials)}; pilot seeds {rec['pilot_seeds']}, "
           "never reported.\n",
           tabulate(rows, ["arm", "trial", "final held-out loss (pilot seeds)", "status",
                           ""], tablefmt="github"), "",
           "Chosen: " + "; ".join(chosen_text(rec, a) for a in rec["chosen"]) + ".", ""]
    out += [f"- {a}: {why}" for a, why in rec["edges"].items()] or \
        ["- No chosen value sat on the edge of its list."]
    out += ["", f"Rule: {RULE}.", f"Edge: {EDGE_RULE}."]
    return "\n".join(out) + "\n"


def trial_counts(declared: int, trials: dict[str, list[Trial]]) -> str:
    """tuning.md's count of each arm's trials without and with its edge steps (EDGE_RULE):
    "Trials per arm (declared 5 each): baseline 5 + 1 edge step = 6, vcycle 5 + 0 edge steps
    = 5"."""
    parts = []
    for arm, ts in trials.items():
        own, steps = sum(not t.extension for t in ts), sum(t.extension for t in ts)
        parts.append(f"{arm} {own} + {steps} edge step{'' if steps == 1 else 's'} = {len(ts)}")
    return f"Trials per arm (declared {declared} each): {', '.join(parts)}"


def chosen_text(rec: dict[str, Any], arm: str) -> str:
    """One arm's values as its runs take them: an inheriting ablation's own value of a knob
    stands over its parent's choice (tuning_record.kept), and the text says so. The one
    rendering of a choice: tuning.md's "Chosen" line and `suite tune`'s last line."""
    own = rec.get("kept", {}).get(arm, {})
    vals = ", ".join(f"{k}={fmt_value(own.get(k, v))}" for k, v in rec["chosen"][arm].items())
    if arm not in rec["inherit"]:
        return f"{arm}: {vals}"
    mine = f"; its own {', '.join(f'{k}={fmt_value(v)}' for k, v in own.items())} kept" \
        if own else ""
    return f"{arm}: {vals} (inherited from {rec['inherit'][arm]}{mine})"


def write(folder: Path, rec: dict[str, Any], trials: dict[str, list[Trial]]) -> None:
    """tuning.json and tuning.md into `folder`, each written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / FILE, rec)
    text = render(rec, trials)
    atomic_write(folder / "tuning.md", lambda f: f.write(text))


__all__ = ["Trial", "chosen_text", "record", "render", "select", "trial_counts", "write"]
