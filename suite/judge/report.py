"""results/<scale>/ -> REPORT.md with comparison tables, the per-level breakdown, the
environment behind the numbers, and plots (PNG next to it, linked by relative path)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from suite.judge import analysis
from suite.judge import sweeps as swept
from suite.judge.claims import Claim
from suite.judge.savings import (
    CENSORED,
    HEADERS,
    POWER_HEADERS,
    claim_of,
    comparison,
    group_runs,
    power_rows,
    savings,
    seeds_of,
    tuning_of,
)
from suite.protocol import is_variant
from suite.results import RUN_ROW_HEADERS, ResultsError, Run, atomic_write, run_row
from suite.spec import BASELINE, baseline_first

RUN_HEADERS = ["arm", "seeds", "completed", "held-out loss start", "held-out loss end",
               "fall over the last 20% of FLOPs", "top1 end", "FLOPs", "train s / seed", "device"]


def run_rows(arms: dict[str, list[Run]]) -> list[list]:
    """Per arm: what ran, where it ended, and whether held-out loss was still falling at the end
    (mean [95% interval] over completed seeds)."""
    rows = []
    for arm, rs in sorted(arms.items(), key=lambda kv: baseline_first(kv[0])):
        ok = [r for r in rs if r.complete]
        end = analysis.mean_ci([r.curve[-1]["heldout_loss"] for r in ok])
        fall = analysis.mean_ci([analysis.tail_drop(r.curve) for r in ok])
        top1 = [r.curve[-1]["heldout_top1"] for r in ok if "heldout_top1" in r.curve[-1]]
        rows.append([
            arm, seeds_of(rs), f"{len(ok)}/{len(rs)}",
            f"{np.mean([r.curve[0]['heldout_loss'] for r in ok]):.4f}" if ok else "-",
            end.fmt(digits=4),
            fall.fmt(digits=4), analysis.mean_ci(top1).fmt(digits=3) if top1 else "-",
            f"{ok[0].summary['flops']:.3g}" if ok else "-",
            f"{sum(r.summary['wall_s'] for r in ok) / len(ok):.1f}" if ok else "-",
            ", ".join(sorted({r.manifest["environment"]["device_name"] for r in rs})),
        ])
    return rows


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
               e["versions"]["fvcore"], e["device_name"], e["threads"],
               "yes" if r.manifest.get("compile") else "no")
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
    """The gate's rows from the records `python -m suite gate --json` wrote for
    benchmarks/regressions.sh (one per injected patch or re-run) whose fresh runs are at
    `scale`; exact-tier rows that only hand over to the statistical tier are left out, and each
    case ends with its gate exit code. Raises ResultsError for a record that is not one."""
    rows = []
    for f in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(f.read_text())
            if Path(rec["fresh"]).name != scale:
                continue
            rows += [[rec["label"], *cells[:3], *cells[3:6], cells[-1]] for cells in rec["rows"]
                     if cells[-1] != "differs: statistical tier"]
            rows.append([rec["label"], "-", "-", "-", "-", "-", "-", f"gate exit: {rec['exit']}"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ResultsError(f"{f}: not a gate record ({e})") from e
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
        for i, (arm, rs) in enumerate(sorted(arms.items(), key=lambda kv: baseline_first(kv[0]))):
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
        atomic_write(out / name, lambda f, fig=fig: fig.savefig(f, format="png", dpi=110),
                     mode="wb")
        plt.close(fig)
        names.append(name)
    return names


def _preamble(scale: str, runs: list[Run]) -> list[str]:
    lines = [f"# Report: {scale} scale", "",
             "Generated by `python -m suite report` from the runs in this folder; every figure "
             "comes from a run with its manifest.json. A saving is 1 - C / B, mean [95% "
             "interval] (n = seeds): B is the baseline's budget, C where the arm's mean curve "
             "over seeds reaches the target (the baseline's mean final value of the criterion); "
             "intervals by test inversion, paired by seed where arm and baseline share seeds "
             "(suite/judge/analysis.py says exactly how). An arm's curve is extended past its "
             f"end by at most {analysis.EXTRAPOLATION:.0%} of the baseline's budget, along its "
             "own final slope, and every figure read off that stretch is flagged †; an arm that "
             "does not reach the target within its run and that stretch is a miss. Verdicts "
             "follow each benchmark's declared [gate] rule.", "", *flop_conventions(runs), ""]
    if scale not in ("paper",):
        lines += [f"**This is the {scale} scale, not the papers' setting.** The papers' claims "
                  "are shown beside the measurements for orientation; a verdict marked "
                  "\"not the paper's setting\" says what the rule gives here, not whether the "
                  "paper is right.", ""]
    return lines


def _benchmark_section(bench: str, arms: dict[str, list[Run]], claims: list[Claim], rule: Any,
                       scale: str, plots_in: Path | None) -> list[str]:
    """One benchmark's part of REPORT.md: savings beside the claims, runs, the rule, notes,
    seeds and noise, cost per level, plots (written to `plots_in`, unless None)."""
    lines = [f"## {bench}", ""]
    if rule is None:
        return lines + [f"(no definition named {bench} is loaded: no verdicts)", ""]
    computed = savings(bench, arms, claims)
    rows, notes = comparison(bench, arms, claims, rule, scale, computed,
                             str(plots_in.parent) if plots_in is not None else "results")
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
    noise = power_rows(computed[0])
    lines += ["Seeds and noise (`python -m suite power`; FLOPs saved, at the crossing):", "",
              tabulate(noise, POWER_HEADERS, tablefmt="github") if noise else
              "(none: no arm has two completed seeds, and a completed baseline, to measure "
              "the noise of)", ""]
    lines += ["Cost per level and operator (mean over completed seeds):", "",
              tabulate(breakdown(arms), ["arm", "part", "steps / calls", "FLOPs",
                                         "share of the arm's FLOPs", "wall s"],
                       tablefmt="github"), ""]
    sweeps = swept.sweeps_of(computed[0])
    if sweeps:
        lines += ["Sweeps (one knob of one arm; the arm's other values as in its row above):",
                  "", tabulate(swept.rows(sweeps, tuning_of), swept.HEADERS, tablefmt="github"),
                  ""]
    if plots_in is not None:
        main = {a: rs for a, rs in arms.items() if not is_variant(a)}
        for name in plot(bench, main, plots_in) + swept.plot(bench, sweeps, plots_in):
            lines += [f"![{name}]({name})", ""]
    return lines


def _sidecars(root: Path, scale: str) -> list[str]:
    """The throughput records and the logs of injected regressions beside the scale folder."""
    lines = []
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
                  "From `bash benchmarks/regressions.sh` (gate records and logs in "
                  f"`{root.parent.name}/regressions/`, each with its patch): a patch applied on "
                  "a scratch branch of a clean clone, the arms it touches run at the committed "
                  "seeds, and `python -m suite gate` against these results. A patch that makes "
                  "an arm better passes: the gate tests for a fall only.", "",
                  tabulate(regressions, REGRESSION_HEADERS, tablefmt="github"), ""]
    return lines


def write_report(root: Path, claims: list[Claim], rules: dict[str, Any], scale: str,
                 plots: bool = True) -> Path:
    """Write root/REPORT.md (and its PNGs) from the runs under root, atomically; returns its
    path. Raises ResultsError when root holds no run."""
    groups = group_runs(root)
    if not groups:
        raise ResultsError(f"{root}: no runs found")
    runs = [r for arms in groups.values() for rs in arms.values() for r in rs]
    lines = _preamble(scale, runs)
    for bench, arms in groups.items():
        lines += _benchmark_section(bench, arms, claims, rules.get(bench), scale,
                                    root if plots else None)
    if previous_root(root).is_dir():
        new, old = _verdicts(root, claims, rules, scale), \
            _verdicts(previous_root(root), claims, rules, scale)
        lines += ["## Tuned results beside the untuned ones they replaced", "",
                  f"The untuned runs are kept in `{previous_root(root)}`; each verdict follows "
                  "the same rule, the tuned one with the matched-budget check.", "",
                  _headline_table(new, old, claims), "",
                  "Which savings survived (a saving: a verdict of `saves` or `meets claim`; "
                  "read off the table above):", "", *survival(new, old), ""]
    lines += _sidecars(root, scale)
    lines += ["## Environment of the runs", "",
              "A run's curve depends on its CPU threads and on `--compile` (each is the same "
              "from run to run; docs/scaling.md, \"The CPU default\"): what these runs used.", "",
              tabulate(environments(runs), ["commit", "dirty", "python", "torch",
                                            "transformers", "timm", "fvcore", "device",
                                            "threads", "compiled", "runs"],
                       tablefmt="github"), ""]
    path = root / "REPORT.md"
    atomic_write(path, lambda f: f.write("\n".join(lines)))
    return path


HEADLINE = ["benchmark", "arm", "tuning", "criterion", "FLOPs saved", "claimed",
            "baseline given the arm's FLOPs", "verdict"]


def _verdicts(root: Path, claims: list[Claim], rules: dict[str, Any],
              scale: str) -> dict[tuple[str, str, str], list]:
    """(benchmark, arm, criterion) -> its comparison row (savings.HEADERS) for every declared
    arm (variants are sweeps and matched baselines: REPORT.md has them) of a scale folder."""
    out = {}
    for bench, arms in group_runs(root).items():
        if bench in rules:
            for r in comparison(bench, arms, claims, rules[bench], scale,
                                out=str(root.parent))[0]:
                if r[0] != BASELINE and not is_variant(r[0]):
                    out[(bench, r[0], r[2])] = r
    return out


def previous_root(root: Path) -> Path:
    """Where the untuned results a tuned scale folder replaced are kept: results/untuned/<scale>."""
    return root.parent / "untuned" / root.name


def headline(root: Path, claims: list[Claim], rules: dict[str, Any], scale: str) -> str:
    """The README's table: every declared non-baseline arm's tuning, FLOPs saving beside the
    saving its paper claims, the matched-budget baseline and the verdict; beside it the verdict
    of the untuned results it replaced, where previous_root(root) holds them."""
    old = _verdicts(previous_root(root), claims, rules, scale) \
        if previous_root(root).is_dir() else {}
    return _headline_table(_verdicts(root, claims, rules, scale), old, claims)


def _headline_table(new: dict[tuple[str, str, str], list], old: dict[tuple[str, str, str], list],
                    claims: list[Claim]) -> str:
    rows = []
    for (bench, arm, criterion), r in new.items():
        claimed = claim_of(claims, bench, arm, "flops_saved", criterion)
        was = old.get((bench, arm, criterion))
        rows.append([bench, arm, r[1], criterion, r[7],
                     f"{claimed.value:.1%}" if claimed else "-", r[12].split(";")[0], r[13],
                     *([f"{was[7]}: {was[13]}" if was else "-"] if old else [])])
    return tabulate(rows, HEADLINE + (["untuned results it replaced: saved, verdict"]
                                      if old else []), tablefmt="github")


SURVIVAL = ["survived", "disappeared", "appeared", "no saving before or after",
            "not re-made on the tuned protocol"]


def survival(new: dict[tuple[str, str, str], list],
             old: dict[tuple[str, str, str], list]) -> list[str]:
    """One markdown bullet per outcome (SURVIVAL's order, empty ones left out) naming each
    benchmark/arm (criterion) of the tuned verdicts `new` (_verdicts) against the untuned ones
    `old` it replaced: a saving that survived, disappeared (with both verdicts), appeared, or
    neither; rows with no untuned verdict were not re-made."""
    found: dict[str, list[str]] = {k: [] for k in SURVIVAL}
    for key, r in new.items():
        label = f"{key[0]}/{key[1]} ({key[2]})"
        was = old.get(key)
        if was is None:
            found[SURVIVAL[4]].append(label)
            continue
        before, after = analysis.is_saving(was[13]), analysis.is_saving(r[13])
        change = f"{label}: {was[13]} -> {r[13]}"
        outcome = SURVIVAL[0] if before and after else SURVIVAL[1] if before else \
            SURVIVAL[2] if after else SURVIVAL[3]
        found[outcome].append(change if before != after else label)
    return [f"- **{k}**: {'; '.join(v)}" for k, v in found.items() if v] or \
        ["- no tuned verdict to compare: no benchmark here has a [gate] rule"]


def flop_conventions(runs: list[Run]) -> list[str]:
    """'FLOP convention: ...' as the runs' manifests recorded it (one line per distinct text,
    with how many runs recorded it when they differ)."""
    seen: dict[str, int] = {}
    for r in runs:
        text = r.manifest.get("flop_convention", "not recorded")
        seen[text] = seen.get(text, 0) + 1
    if len(seen) == 1:
        return [f"FLOP convention: {next(iter(seen))}."]
    return [f"FLOP convention ({n} runs): {text}." for text, n in sorted(seen.items())]


def sample(root: Path, bench: str, seed: int = 0) -> str:
    """What `python -m suite run BENCH` prints, made from the runs of seed `seed` of every arm
    of `bench` under the scale folder `root` (their folder shown as runs/... would be): the
    README's sample, generated, never typed. Only the definition's own arms: a sweep's or a
    matched budget's variants are not what that command runs. Raises ResultsError when there is
    none."""
    runs = [r for arms in group_runs(root).get(bench, {}).values() for r in arms
            if r.seed == seed and not is_variant(r.manifest["arm_name"])]
    if not runs:
        raise ResultsError(f"{root}: no run of {bench} with seed {seed}")
    runs.sort(key=lambda r: baseline_first(r.manifest["arm_name"]))
    rows = [run_row(r, f"runs/{root.name}/{bench}/{r.manifest['arm_name']}/seed-{seed}")
            for r in runs]
    return "```text\n" + tabulate(rows, RUN_ROW_HEADERS, tablefmt="github") + "\n```"


def update_readme(path: Path, root: Path, claims: list[Claim], rules: dict[str, Any],
                  scale: str) -> list[str]:
    """Fill the generated blocks of a markdown file from the runs of the scale folder `root`:
    `<!-- headline SCALE -->` (required) and each `<!-- sample SCALE BENCH -->` present.
    Returns the markers filled; raises ResultsError naming a missing headline marker."""
    splice(path, f"headline {scale}", headline(root, claims, rules, scale))
    filled = [f"headline {scale}"]
    for bench in re.findall(rf"<!-- sample {re.escape(scale)} ([\w-]+) -->", path.read_text()):
        splice(path, f"sample {scale} {bench}", sample(root, bench))
        filled.append(f"sample {scale} {bench}")
    return filled


def splice(path: Path, marker: str, text: str) -> None:
    """Replace what lies between `<!-- MARKER -->` and `<!-- end MARKER -->` in the markdown
    file `path` with `text`, atomically (an interrupted write leaves the old file whole).
    Raises ResultsError naming the file and the markers when either is missing."""
    begin, end = f"<!-- {marker} -->", f"<!-- end {marker} -->"
    if not path.is_file():
        raise ResultsError(f"{path}: no such file (a markdown file with {begin} ... {end})")
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise ResultsError(f"{path}: markers {begin} ... {end} not found")
    head, rest = doc.split(begin, 1)
    new = f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}"
    atomic_write(path, lambda f: f.write(new))
