"""results/<scale>/ -> REPORT.md with comparison tables, the per-level breakdown, the
environment behind the numbers, and plots (PNG next to it, linked by relative path)."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from suite import analysis
from suite.claims import Claim
from suite.flops import CONVENTION
from suite.results import ResultsError, Run, find_runs

CRITERIA = {"heldout_loss": "held-out loss", "train_loss": "training loss"}
CENSORED = ("‡ the interval's lower end lies past the end of the run and its bounded "
            "extrapolation (the upper band does not reach the target there): censored, read as "
            "-inf by the verdicts. † an estimate or interval end read off the extrapolation of "
            f"the arm past its end (at most {analysis.EXTRAPOLATION:.0%} of the baseline's "
            "budget).")


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


def _claim(claims: list[Claim], bench: str, arm: str, metric: str, criterion: str) -> Claim | None:
    rows = [c for c in claims if (c.benchmark, c.arm, c.metric, c.criterion) ==
            (bench, arm, metric, criterion)]
    return rows[0] if rows else None


def judged_on(runs: list[Run], claims: list[Claim], bench: str, arm: str) -> list[str]:
    """The criteria an arm is judged on: held-out loss always; training loss for paper 2's
    method (its criterion) and wherever a claim is stated on it."""
    method = runs[0].manifest.get("method", {}).get("name")
    train = method == "ode-multilevel" or any(
        (c.benchmark, c.arm, c.criterion) == (bench, arm, CRITERIA["train_loss"]) for c in claims)
    return ["heldout_loss", "train_loss"] if train else ["heldout_loss"]


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
    base = done.get("baseline", [])
    out, notes = [], []
    for arm, rs in sorted(arms.items(), key=lambda kv: (kv[0] != "baseline", kv[0])):
        ok = done[arm]
        if len(ok) < len(rs):
            bad = ", ".join(f"seed {r.seed}: {r.status}" for r in rs if not r.complete)
            notes.append(f"{bench}/{arm}: not counted: {bad}")
        if not ok:
            continue
        if note := ok[0].manifest.get("method", {}).get("options", {}).get("note"):
            notes.append(f"{bench}/{arm}: {note}")
        if arm != "baseline" and not base:
            notes.append(f"{bench}/{arm}: no completed baseline to compare with")
        by = ({y: analysis.compare(ok, base, y=y)
               for y in judged_on(ok, claims or [], bench, arm)}
              if arm != "baseline" and base else {})
        for y, c in by.items():
            if c.extrapolated:
                notes.append(f"{bench}/{arm} ({CRITERIA[y]}): {c.extrapolated} estimate(s) or "
                             "interval end(s) read off the bounded extrapolation (†)")
            if c.censored:
                notes.append(f"{bench}/{arm} ({CRITERIA[y]}): {c.censored} interval(s) with a "
                             "censored lower end (‡)")
        out.append(ArmSavings(arm, ok, by))
    return out, notes


def _seeds(runs: list[Run]) -> str:
    return ",".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))


def comparison(bench: str, arms: dict[str, list[Run]], claims: list[Claim], rule: Any,
               scale: str, found: tuple[list[ArmSavings], list[str]] | None = None,
               ) -> tuple[list[list], list[str]]:
    """One row per arm and criterion, beside the papers' claims and the rule's verdict
    (`found`: what `savings` already computed for these runs)."""
    found, notes = found or savings(bench, arms, claims)
    rows = []
    for a in found:
        if not a.by_criterion:
            final = analysis.mean_ci([r.curve[-1].get("heldout_loss") for r in a.runs])
            rows.append([a.arm, "held-out loss", _seeds(a.runs), final.fmt(digits=4), "-",
                         *["-"] * 5, "-", "-"])
            continue
        for y, c in a.by_criterion.items():
            criterion = CRITERIA[y]
            claim_f = _claim(claims, bench, a.arm, "flops_saved", criterion)
            claim_w = _claim(claims, bench, a.arm, "walltime_saved", criterion)
            v = analysis.verdict(c.flops_saving, claim_f.value if claim_f else None,
                                 rule.tolerance, rule.min_seeds, rule.max_interval)
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
                a.arm, criterion, _seeds(a.runs), c.arm_final.fmt(digits=4),
                f"{c.target:.4f}", *saving_cells(c), claim_txt or "-",
                _qualified(v, rule, scale, claim_f is not None),
            ])
    return rows, notes


def _qualified(verdict: str, rule: Any, scale: str, has_claim: bool) -> str:
    """The verdict with what the [gate] rule says about this scale in brackets."""
    why = [s for s, on in (("not the paper's setting",
                            has_claim and scale not in rule.claims_at),
                           (f"seeds capped: unresolved at {scale}",
                            scale in rule.unresolved_at)) if on]
    return f"{verdict} ({'; '.join(why)})" if why else verdict


POWER_HEADERS = ["arm", "criterion", "seeds", "pairing", "noise per seed (nats)",
                 "noise per seed (pt)", "half-width now (pt)", "seeds for ±5 pt"]


def power_rows(found: list[ArmSavings], goal: float = 0.05) -> list[list]:
    """`python -m suite power` and the report: per arm and criterion (`found`, from `savings`),
    the observed noise at the crossing, the half-width at the current seeds and the seeds a
    half-width of `goal` needs. The baseline's row is baseline against baseline on other seeds
    (unpaired)."""
    base = next((a.runs for a in found if a.arm == "baseline"), [])
    rows = []
    for a in found:
        if a.arm == "baseline":
            if len(a.runs) < 2:
                continue
            p = analysis.baseline_power(analysis.grid(a.runs, "flops", "heldout_loss"), goal)
            rows.append([a.arm, "held-out loss (vs itself, other seeds)", p.n, "unpaired",
                         f"{p.noise_nats:.4f}", f"{100 * p.noise_pt:.1f}", "-",
                         p.seeds_needed or f"> {analysis.MAX_SEEDS}"])
            continue
        for y, c in a.by_criterion.items():
            if min(len(a.runs), len(base)) < 2:
                rows.append([a.arm, CRITERIA[y], c.flops_saving.n, "-", "-", "-", "-",
                             "one seed: no noise to measure"])
                continue
            p = analysis.power(c, analysis.grid(a.runs, "flops", y),
                               analysis.grid(base, "flops", y), goal)
            hw = "censored" if not math.isfinite(p.half_width) else f"{100 * p.half_width:.1f}"
            rows.append([a.arm, CRITERIA[y], p.n, "paired" if p.paired else "unpaired",
                         f"{p.noise_nats:.4f}", f"{100 * p.noise_pt:.1f}", hw,
                         p.seeds_needed or f"> {analysis.MAX_SEEDS}"])
    return rows


RUN_HEADERS = ["arm", "seeds", "completed", "held-out loss start", "held-out loss end",
               "fall over the last 20% of FLOPs", "top1 end", "FLOPs", "train s / seed", "device"]


def run_rows(arms: dict[str, list[Run]]) -> list[list]:
    """Per arm: what ran, where it ended, and whether held-out loss was still falling at the end
    (mean [95% interval] over completed seeds)."""
    rows = []
    for arm, rs in sorted(arms.items(), key=lambda kv: (kv[0] != "baseline", kv[0])):
        ok = [r for r in rs if r.complete]
        end = analysis.mean_ci([r.curve[-1]["heldout_loss"] for r in ok])
        fall = analysis.mean_ci([analysis.tail_drop(r.curve) for r in ok])
        top1 = [r.curve[-1]["heldout_top1"] for r in ok if "heldout_top1" in r.curve[-1]]
        rows.append([
            arm, _seeds(rs), f"{len(ok)}/{len(rs)}",
            f"{np.mean([r.curve[0]['heldout_loss'] for r in ok]):.4f}" if ok else "-",
            end.fmt(digits=4),
            fall.fmt(digits=4), analysis.mean_ci(top1).fmt(digits=3) if top1 else "-",
            f"{ok[0].summary['flops']:.3g}" if ok else "-",
            f"{sum(r.summary['wall_s'] for r in ok) / len(ok):.1f}" if ok else "-",
            ", ".join(sorted({r.manifest["environment"]["device_name"] for r in rs})),
        ])
    return rows


HEADERS = ["arm", "criterion", "seeds", "final value (mean)", "target", "pairing",
           "FLOPs saved to target", "FLOPs saved, blocks only", "wall time saved to target",
           "criterion at equal FLOPs (arm - baseline)", "claim", "verdict"]


def breakdown(arms: dict[str, list[Run]]) -> list[list]:
    rows = []
    for arm, rs in sorted(arms.items()):
        ok = [r for r in rs if r.complete]
        if not ok:
            continue
        total = np.mean([r.summary["flops"] for r in ok])
        levels = sorted({lv for r in ok for lv in r.summary["levels"]})
        for lv in levels:
            f = np.mean([r.summary["levels"][lv]["flops"] for r in ok])
            rows.append([arm, f"level {lv}",
                         int(np.mean([r.summary["levels"][lv]["steps"] for r in ok])),
                         f"{f:.3g}", f"{f / total:.1%}",
                         f"{np.mean([r.summary['levels'][lv]['wall_s'] for r in ok]):.1f}"])
        for op in sorted({o for r in ok for o in r.summary.get("operators", {})}):
            f = np.mean([r.summary["operators"][op]["flops"] for r in ok])
            rows.append([arm, op, int(np.mean([r.summary["operators"][op]["count"]
                                               for r in ok])),
                         f"{f:.3g}", f"{f / total:.3%}",
                         f"{np.mean([r.summary['operators'][op]['wall_s'] for r in ok]):.2f}"])
    return rows


def environments(runs: list[Run]) -> list[list]:
    seen: dict[tuple, int] = {}
    for r in runs:
        e = r.manifest["environment"]
        key = (str(e["git"]["commit"])[:10], str(e["git"]["dirty"]), e["python"],
               e["versions"]["torch"], e["versions"]["transformers"], e["versions"]["timm"],
               e["versions"]["fvcore"], e["device_name"], e["threads"])
        seen[key] = seen.get(key, 0) + 1
    return [[*k, n] for k, n in sorted(seen.items())]


THROUGHPUT_HEADERS = ["benchmark", "device", "precision", "compiled", "ms / step", "throughput",
                      "TFLOP/s", "MFU", "commit"]


def throughput_rows(folder: Path, scale: str) -> list[list]:
    rows = []
    for f in sorted(folder.glob(f"*-{scale}-*.json")):
        try:
            r = json.loads(f.read_text())
            rows.append([r["benchmark"], r["environment"]["device_name"], r["precision"],
                         "yes" if r["compile"] else "no", f"{r['step_ms']:.1f}",
                         f"{r['throughput_per_s']:.4g} {r['unit']}/s",
                         f"{r['achieved_flops_per_s'] / 1e12:.3g}",
                         f"{r['mfu']:.1%}" if r["mfu"] is not None else "-",
                         str(r["environment"]["git"]["commit"])[:10]])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ResultsError(f"{f}: not a throughput record ({e})") from e
    return rows


REGRESSION_HEADERS = ["case (patch commit)", "benchmark", "arm", "tier", "check", "reference",
                      "fresh", "result"]


def regression_rows(folder: Path, scale: str) -> list[list]:
    """The gate's rows from the logs of benchmarks/regressions.sh (one per injected patch or
    re-run) whose fresh runs are at `scale`; exact-tier rows that only hand over to the
    statistical tier are left out, and each case ends with its gate exit code."""
    rows = []
    for f in sorted(folder.glob("*.log")):
        text = f.read_text().splitlines()
        head = re.match(r"# (\S+): (\w+)", text[0]) if text else None
        gate = [m for line in text if (m := re.match(r"gate: \w+ \((\S+) against", line))]
        if not head or not gate or Path(gate[-1].group(1)).name != scale:
            continue
        case = f"{head.group(1)} ({head.group(2)})"
        table = False
        for line in text:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| benchmark") and "tier" in cells:
                table = True
            elif table and line.startswith("|") and not line.startswith("|--"):
                if cells[-1] != "differs: statistical tier":
                    rows.append([case, *cells[:3], *cells[3:6], cells[-1]])
            elif line.startswith("gate exit:"):
                rows.append([case, "-", "-", "-", "-", "-", "-", line])
                table = False
    return rows


def _mean_curve(runs: list[Run], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    end = min(r.curve[-1][x] for r in runs)
    grid = np.linspace(0, end, 200)
    ys = [np.interp(grid, [p[x] for p in r.curve], [p[y] for p in r.curve]) for r in runs]
    return grid, np.mean(ys, axis=0)


def plot(bench: str, arms: dict[str, list[Run]], out: Path) -> list[str]:
    """Held-out loss against FLOPs and against wall time: thin lines per seed, bold mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for x, label in (("flops", "training FLOPs"), ("wall_s", "training wall time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for i, (arm, rs) in enumerate(sorted(arms.items(), key=lambda kv: kv[0] != "baseline")):
            ok = [r for r in rs if r.complete]
            if not ok:
                continue
            color = f"C{i}"
            for r in ok:
                ax.plot([p[x] for p in r.curve], [p["heldout_loss"] for p in r.curve],
                        color=color, lw=0.6, alpha=0.45)
            gx, gy = _mean_curve(ok, x, "heldout_loss")
            ax.plot(gx, gy, color=color, lw=2.2, label=f"{arm} (mean of {len(ok)})")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out loss")
        ax.set_title(f"{bench}: held-out loss against {label}")
        ax.grid(alpha=0.3)
        ax.legend()
        lo = min((p["heldout_loss"] for rs in arms.values() for r in rs if r.complete
                  for p in r.curve), default=0.0)
        finals = [r.curve[-1]["heldout_loss"] for rs in arms.values() for r in rs if r.complete]
        if finals:  # the interesting part is the end: clip the first steep drop
            ax.set_ylim(lo - 0.05 * abs(lo), max(finals) + 3 * (max(finals) - lo) + 0.1)
        name = f"{bench}-{'flops' if x == 'flops' else 'wall'}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def write_report(root: Path, claims: list[Claim], rules: dict[str, Any], scale: str,
                 plots: bool = True) -> Path:
    """Write root/REPORT.md (and its PNGs) from the runs under root; returns its path."""
    groups = group_runs(root)
    if not groups:
        raise ResultsError(f"{root}: no runs found")
    lines = [f"# Report: {scale} scale", "",
             "Generated by `python -m suite report` from the runs in this folder; every figure "
             "comes from a run with its manifest.json. A saving is 1 - C / B, mean [95% "
             "interval] (n = seeds): B is the baseline's budget, C where the arm's mean curve "
             "over seeds reaches the target (the baseline's mean final value of the criterion); "
             "intervals by test inversion, paired by seed where arm and baseline share seeds "
             "(suite/analysis.py says exactly how). An arm's curve is extended past its end by at "
             f"most {analysis.EXTRAPOLATION:.0%} of the baseline's budget, along its own final "
             "slope, and every figure read off that stretch is flagged †; an arm that does not "
             "reach the target within its run and that stretch is a miss. Verdicts follow each "
             "benchmark's declared [gate] rule.", "",
             f"FLOP convention: {CONVENTION}.", ""]
    if scale not in ("paper",):
        lines += [f"**This is the {scale} scale, not the papers' setting.** The papers' claims "
                  "are shown beside the measurements for orientation; a verdict marked "
                  "\"not the paper's setting\" says what the rule gives here, not whether the "
                  "paper is right.", ""]
    all_runs = []
    for bench, arms in groups.items():
        rule = rules.get(bench)
        all_runs += [r for rs in arms.values() for r in rs]
        lines += [f"## {bench}", ""]
        if rule is None:
            lines += [f"(no definition named {bench} is loaded: no verdicts)", ""]
            continue
        computed = savings(bench, arms, claims)
        rows, notes = comparison(bench, arms, claims, rule, scale, computed)
        lines += [tabulate(rows, HEADERS, tablefmt="github"), ""]
        lines += ["Runs (a fall over the last 20% of FLOPs at or below 0: held-out loss had "
                  "stopped falling, the data or the schedule ran out):", "",
                  tabulate(run_rows(arms), RUN_HEADERS, tablefmt="github"), ""]
        lines += [f"Rule ([gate]): tolerance {rule.tolerance:.0%}, at least {rule.min_seeds} "
                  f"seeds, an interval that holds 0 and is wider than {rule.max_interval:.0%}: "
                  f"inconclusive; claims held at: {', '.join(rule.claims_at)}"
                  + (f"; declared unresolved at {scale}: the power analysis asks for more seeds "
                     "than about 60 CPU-minutes allow, so its seeds are capped and an interval "
                     "may stay wider than +-5 pt" if scale in rule.unresolved_at else "")
                  + ".", ""]
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
        if any(f in str(cell) for row in rows for cell in row for f in "‡†"):
            lines += [CENSORED, ""]
        lines += ["Seeds and noise (`python -m suite power`; FLOPs saved, at the crossing):", "",
                  tabulate(power_rows(computed[0]), POWER_HEADERS, tablefmt="github"),
                  ""]
        lines += ["Cost per level and operator (mean over completed seeds):", "",
                  tabulate(breakdown(arms), ["arm", "part", "steps / calls", "FLOPs",
                                             "share of the arm's FLOPs", "wall s"],
                           tablefmt="github"), ""]
        if plots:
            for name in plot(bench, arms, root):
                lines += [f"![{name}]({name})", ""]
    speed = throughput_rows(root.parent / "throughput", scale)
    if speed:
        lines += ["## Speed of the baseline's training step", "",
                  f"From `python -m suite throughput` (files in `{root.parent.name}/throughput/`): "
                  "timed steps after warm-up, FLOPs as the meter counts them; MFU against the "
                  "device's bf16 peak, only in bf16 and only for a device in suite/flops.py's "
                  "table.", "", tabulate(speed, THROUGHPUT_HEADERS, tablefmt="github"), ""]
    regressions = regression_rows(root.parent / "regressions", scale)
    if regressions:
        lines += ["## Injected regressions and re-runs", "",
                  "From `bash benchmarks/regressions.sh` (logs in "
                  f"`{root.parent.name}/regressions/`, each with its patch): a patch applied on "
                  "a scratch branch of a clean clone, the arms it touches run at the committed "
                  "seeds, and `python -m suite gate` against these results. A patch that makes "
                  "an arm better passes: the gate tests for a fall only.", "",
                  tabulate(regressions, REGRESSION_HEADERS, tablefmt="github"), ""]
    lines += ["## Environment of the runs", "",
              tabulate(environments(all_runs), ["commit", "dirty", "python", "torch",
                                                "transformers", "timm", "fvcore", "device",
                                                "threads", "runs"], tablefmt="github"), ""]
    path = root / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def headline(root: Path, claims: list[Claim], rules: dict[str, Any], scale: str) -> str:
    """The README's table: every non-baseline arm's FLOP and wall saving beside its claims."""
    rows = []
    for bench, arms in group_runs(root).items():
        if bench not in rules:
            continue
        for r in comparison(bench, arms, claims, rules[bench], scale)[0]:
            if r[0] != "baseline":
                rows.append([bench, *[r[i] for i in (0, 1, 6, 8, 10, 11)]])
    return tabulate(rows, ["benchmark", "arm", "criterion", "FLOPs saved", "wall time saved",
                           "claim", "verdict"], tablefmt="github")

