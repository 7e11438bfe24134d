"""Savings of every arm against its benchmark's baseline, on the criteria its method declares,
beside the papers' claims and the verdict of the benchmark's declared rule; and the noise and
seeds behind each (the power analysis). The one place savings are computed: `compare`, the
report, the README's headline and `power` all read them from here."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.judge import analysis, matched, power
from suite.judge.claims import Claim
from suite.protocol import is_variant, parent_of, split_name
from suite.results import Run, find_runs
from suite.spec import BASELINE, CRITERIA, baseline_first

CENSORED = ("‡ the interval's lower end lies past the end of the run and its bounded "
            "extrapolation (the upper band does not reach the target there): censored, read as "
            "-inf by the verdicts. † an estimate or interval end read off the extrapolation of "
            f"the arm past its end (at most {analysis.EXTRAPOLATION:.0%} of the baseline's "
            "budget).")
HEADERS = ["arm", "tuning", "criterion", "seeds", "final value (mean)", "target", "pairing",
           "FLOPs saved to target", "FLOPs saved, blocks only", "wall time saved to target",
           "criterion at equal FLOPs (arm - baseline)", "claim",
           "baseline given the arm's FLOPs: final value vs target", "verdict"]
POWER_HEADERS = ["arm", "criterion", "seeds", "pairing", "noise per seed (nats)",
                 "noise per seed (pt)", "half-width now (pt)", "seeds for ±5 pt"]

def group_runs(root: Path) -> dict[str, dict[str, list[Run]]]:
    """benchmark -> arm -> runs (all statuses) of one scale folder."""
    out: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in find_runs(root):
        out[r.manifest["benchmark"]][r.manifest["arm_name"]].append(r)
    return {b: dict(a) for b, a in sorted(out.items())}


def saving_cells(c: analysis.Comparison) -> list[str]:
    """The measured columns every savings table shows, in this order: pairing, FLOPs saved to
    target, FLOPs saved counting residual blocks only, wall time saved, the criterion at equal
    FLOPs (arm - baseline, nats and bits per byte)."""
    at = c.loss_at_equal_flops.fmt(digits=4)
    if c.bpb_at_equal_flops is not None:
        at += f"; {c.bpb_at_equal_flops.fmt(digits=4)} bpb"
    unpaired = "unpaired (one seed)" if c.flops_saving.n < 2 else "unpaired (seeds differ)"
    return ["paired" if c.paired else unpaired,
            c.flops_saving.fmt(), c.flops_blocks_saving.fmt(),
            c.wall_saving.fmt("wall time"), at]


def claim_of(claims: list[Claim], bench: str, arm: str, metric: str,
             criterion: str) -> Claim | None:
    """The claim about `metric` of this benchmark's arm on `criterion` (its name), or None."""
    rows = [c for c in claims if (c.benchmark, c.arm, c.metric, c.criterion) ==
            (bench, arm, metric, criterion)]
    return rows[0] if rows else None


def judged_on(runs: list[Run], claims: list[Claim], bench: str, arm: str) -> list[str]:
    """The criteria (CRITERIA keys) an arm is judged on: those its method declared, as its runs'
    manifests record them (`method.criteria`; held-out loss alone in a manifest written before
    methods declared them), and any other on which a claim about the arm is stated."""
    declared = runs[0].manifest.get("method", {}).get("criteria") or ["heldout_loss"]
    claimed = [y for y, name in CRITERIA.items()
               if any((c.benchmark, c.arm, c.criterion) == (bench, arm, name) for c in claims)]
    return [y for y in CRITERIA if y in declared or y in claimed]


@dataclass
class ArmSavings:
    arm: str
    runs: list[Run]  # its completed runs
    by_criterion: dict[str, analysis.Comparison]  # CRITERIA key -> against the baseline


def savings(bench: str, arms: dict[str, list[Run]],
            claims: list[Claim] | None = None) -> tuple[list[ArmSavings], list[str]]:
    """The one place savings are computed, for `compare`, the report and the README: every arm
    with completed runs (baseline first), each non-baseline arm against the completed baseline on
    the criteria it is judged on. Notes name the runs not counted, the arms with nothing to
    compare to, censored interval ends, and each arm's declared note (an adaptation, an
    ablation)."""
    done = {a: [r for r in rs if r.complete] for a, rs in arms.items()}
    base = done.get(BASELINE, [])
    out, notes = [], []
    for arm, rs in sorted(arms.items(), key=lambda kv: baseline_first(kv[0])):
        ok = done[arm]
        if len(ok) < len(rs):
            bad = ", ".join(f"seed {r.seed}: {r.status}" for r in rs if not r.complete)
            notes.append(f"{bench}/{arm}: not counted: {bad}")
        if not ok:
            continue
        if note := ok[0].manifest.get("method", {}).get("options", {}).get("note"):
            notes.append(f"{bench}/{arm}: {note}")
        if arm != BASELINE and not base:
            notes.append(f"{bench}/{arm}: no completed baseline to compare with")
        by = ({y: analysis.compare(ok, base, y=y)
               for y in judged_on(ok, claims or [], bench, arm)}
              if arm != BASELINE and base else {})
        for y, c in by.items():
            if c.extrapolated:
                notes.append(f"{bench}/{arm} ({CRITERIA[y]}): {c.extrapolated} estimate(s) or "
                             "interval end(s) read off the bounded extrapolation (†)")
            if c.censored:
                notes.append(f"{bench}/{arm} ({CRITERIA[y]}): {c.censored} interval(s) with a "
                             "censored lower end (‡)")
        out.append(ArmSavings(arm, ok, by))
    return out, notes


def seeds_of(runs: list[Run]) -> str:
    return ",".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))


def tuning_of(runs: list[Run]) -> str:
    """What the runs' manifests say of their tuning: the chosen values, or 'untuned' (a run
    from before tuning was recorded is untuned)."""
    t = runs[0].manifest.get("tuning") or {"status": "untuned"}
    own = ", ".join(f"{k}={v}" for k, v in (t.get("variant") or {}).items())
    if t.get("status") != "tuned":
        return "untuned" + (f"; by name: {own}" if own else "")
    tuned = ", ".join(f"{k}={v}" for k, v in t.get("values", {}).items())
    return "; ".join(filter(None, [tuned, f"by name: {own}" if own else ""])) or "tuned"


def is_matched_baseline(arm: str) -> bool:
    """`baseline@budget=0.7`: a baseline given a fraction of the budget, which the matched-
    budget check reads; not an arm with a saving of its own."""
    if not is_variant(arm) or parent_of(arm) != BASELINE:
        return False
    return set(split_name(arm)[1]) == {"budget"}  # a baseline lr sweep is a sweep


def _matched(bench: str, a: ArmSavings, c: analysis.Comparison, arms: dict[str, list[Run]],
             rule: Any, scale: str, v: str, y: str, out: str) -> tuple[str, str]:
    """(cell, verdict) of the matched-budget check of one arm and criterion."""
    if not analysis.is_saving(v):
        return "-", v
    f = matched.matched_fraction(c.flops_saving.mean, tuple(rule.matched_budgets))
    name = matched.matched_arm(f)
    base = [r for r in arms.get(BASELINE, []) if r.complete]
    budget = sum(float(r.curve[-1]["flops"]) for r in base) / len(base)
    m = matched.check(a.runs, arms.get(name, []), f, budget, c.target, y)
    if m is None or m.n < matched.MIN_SEEDS:
        cell = (f"not run: python -m suite run {bench} --scale {scale} --arms {name} "
                f"--seeds {matched.MIN_SEEDS} --out {out}") if m is None else m.fmt()
    else:
        cell = m.fmt()
    return cell, matched.verdict(v, m, f)


def matched_needed(bench: str, arms: dict[str, list[Run]], claims: list[Claim],
                   rule: Any) -> list[str]:
    """The matched baselines (`baseline@budget=f`, f < 1) that the verdicts of these runs ask
    for: one per fraction that an arm's `saves` or `meets claim` verdict needs (any criterion),
    in increasing order. What `run --matched` trains."""
    found, _ = savings(bench, arms, claims)
    need = set()
    for a in found:
        if is_variant(a.arm):
            continue
        for y, c in a.by_criterion.items():
            claim = claim_of(claims, bench, a.arm, "flops_saved", CRITERIA[y])
            v = analysis.verdict(c.flops_saving, claim.value if claim else None,
                                 rule.tolerance, rule.min_seeds, rule.max_interval)
            if analysis.is_saving(v):
                need.add(matched.matched_fraction(c.flops_saving.mean,
                                                  tuple(rule.matched_budgets)))
    return [matched.matched_arm(f) for f in sorted(need) if f < 1]


def comparison(bench: str, arms: dict[str, list[Run]], claims: list[Claim], rule: Any,
               scale: str, found: tuple[list[ArmSavings], list[str]] | None = None,
               out: str = "results") -> tuple[list[list], list[str]]:
    """One row per arm and criterion (HEADERS), beside the papers' claims, the matched-budget
    check and the rule's verdict (`found`: what `savings` already computed for these runs;
    `out`: the results root they are in, for the command that makes a missing matched run).
    A matched baseline (`baseline@budget=f`) has no row: its runs are read by the check."""
    found, notes = found or savings(bench, arms, claims)
    rows = []
    for a in found:
        if is_matched_baseline(a.arm):
            continue
        if not a.by_criterion:
            final = analysis.mean_ci([r.curve[-1].get("heldout_loss") for r in a.runs])
            rows.append([a.arm, tuning_of(a.runs), CRITERIA["heldout_loss"], seeds_of(a.runs),
                         final.fmt(digits=4), "-", *["-"] * 5, "-", "-", "-"])
            continue
        for y, c in a.by_criterion.items():
            criterion = CRITERIA[y]
            claim_f = claim_of(claims, bench, a.arm, "flops_saved", criterion)
            claim_w = claim_of(claims, bench, a.arm, "walltime_saved", criterion)
            v = analysis.verdict(c.flops_saving, claim_f.value if claim_f else None,
                                 rule.tolerance, rule.min_seeds, rule.max_interval)
            cell, v = _matched(bench, a, c, arms, rule, scale, v, y, out)
            claim_txt = " / ".join(f"{k} {x.value:.1%}" for k, x in (("FLOPs", claim_f),
                                                                   ("wall", claim_w)) if x)
            # tokens to the same quality (G_stack): shown, never judged, since the growth
            # phase's tokens cost fewer FLOPs than the target model's
            tokens = [c for c in claims if (c.benchmark, c.arm, c.metric, c.criterion) ==
                      (bench, a.arm, "tokens_saved", criterion)]
            if tokens:
                claim_txt = " / ".join(filter(None, [claim_txt, "tokens " + ", ".join(
                    f"{x.value:.1%} ({x.model.split(',')[0]})" for x in tokens) + " (not judged)"]))
            rows.append([
                a.arm, tuning_of(a.runs), criterion, seeds_of(a.runs),
                c.arm_final.fmt(digits=4), f"{c.target:.4f}", *saving_cells(c),
                claim_txt or "-", cell, _qualified(v, rule, scale, claim_f is not None),
            ])
    return rows, notes


def _qualified(verdict: str, rule: Any, scale: str, has_claim: bool) -> str:
    """The verdict with what the [gate] rule says about this scale in brackets."""
    why = [s for s, on in (("not the paper's setting",
                            has_claim and scale not in rule.claims_at),
                           (f"seeds capped: unresolved at {scale}",
                            scale in rule.unresolved_at)) if on]
    return f"{verdict} ({'; '.join(why)})" if why else verdict


def power_rows(found: list[ArmSavings], goal: float = 0.05) -> list[list]:
    """`python -m suite power` and the report: per arm and criterion (`found`, from `savings`),
    the observed noise at the crossing, the half-width at the current seeds and the seeds a
    half-width of `goal` needs. The baseline's row is baseline against baseline on other seeds
    (unpaired)."""
    base = next((a.runs for a in found if a.arm == BASELINE), [])
    rows = []
    for a in found:
        if a.arm == BASELINE:
            if len(a.runs) < 2:
                continue
            p = power.baseline_power(analysis.grid(a.runs, "flops", "heldout_loss"), goal)
            rows.append([a.arm, "held-out loss (vs itself, other seeds)", p.n, "unpaired",
                         f"{p.noise_nats:.4f}", f"{100 * p.noise_pt:.1f}", "-",
                         p.seeds_needed or f"> {power.MAX_SEEDS}"])
            continue
        for y, c in a.by_criterion.items():
            if min(len(a.runs), len(base)) < 2:
                rows.append([a.arm, CRITERIA[y], c.flops_saving.n, "-", "-", "-", "-",
                             "one seed: no noise to measure"])
                continue
            p = power.power(c, analysis.grid(a.runs, "flops", y),
                               analysis.grid(base, "flops", y), goal)
            hw = "censored" if not math.isfinite(p.half_width) else f"{100 * p.half_width:.1f}"
            rows.append([a.arm, CRITERIA[y], p.n, "paired" if p.paired else "unpaired",
                         f"{p.noise_nats:.4f}", f"{100 * p.noise_pt:.1f}", hw,
                         p.seeds_needed or f"> {power.MAX_SEEDS}"])
    return rows

