"""`python -m suite <command>`: list, run, compare. noxfile.py wraps these commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tabulate import tabulate  # noqa: E402

from suite import analysis, flops  # noqa: E402
from suite.data import DataError  # noqa: E402
from suite.families import FAMILIES  # noqa: E402
from suite.methods import MethodError, plan  # noqa: E402
from suite.registry import inputs_for, load_benchmarks  # noqa: E402
from suite.results import ResultsError, find_runs, read_run  # noqa: E402
from suite.spec import SCALES, SpecError, with_data_source  # noqa: E402


def _size(model: dict[str, int]) -> str:
    return "-".join(str(model[k]) for k in ("layers", "hidden", "heads") if k in model) + (
        f"/p{model['patch']}" if "patch" in model else "")


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for b in load_benchmarks(args.benchmarks).values():
        for s in b.scales.values():
            rows.append([b.name, b.family, s.name, _size(s.model), s.seq_len or "-", s.batch_size,
                         s.steps, s.data.source, ", ".join(b.arms)])
    print(tabulate(rows, ["benchmark", "family", "scale", "L-H-A", "seq", "batch", "steps", "data",
                          "arms"], tablefmt="github"))
    return 0


def _fmt_flops(x: float) -> str:
    return f"{x:.3g}"


def cmd_run(args: argparse.Namespace) -> int:
    from suite.runner import run_one  # imports torch models; keep `list` fast

    benches = load_benchmarks(args.benchmarks)
    if args.benchmark not in benches:
        raise SpecError("(command line)", "benchmark", f"unknown benchmark {args.benchmark!r}",
                        ", ".join(benches))
    bench = benches[args.benchmark]
    scale = bench.scale(args.scale)
    if args.data:
        bench = with_data_source(bench, args.scale, args.data)
        scale = bench.scale(args.scale)
    arms = args.arms.split(",") if args.arms else list(bench.arms)
    for a in arms:
        if a not in bench.arms:
            raise SpecError(bench.path, f"arms.{a}", "no such arm", ", ".join(bench.arms))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.dry_run:
        fam = FAMILIES[bench.family]
        rows = []
        for a in arms:
            p = plan(bench.arms[a], scale)
            inputs = inputs_for(fam, scale, None)
            total = sum(flops.train_step_flops(fam, s.model, inputs, scale.batch_size) * s.steps
                        for s in p.steps if hasattr(s, "steps"))
            rows.append([a, p.method, p.train_steps, _fmt_flops(total)])
        print(tabulate(rows, ["arm", "method", "train steps", "FLOPs (projected)"],
                       tablefmt="github"))
        print(f"\nFLOP convention: {flops.CONVENTION}")
        return 0
    rows = []
    for a in arms:
        for seed in seeds:
            path = run_one(bench, args.scale, a, seed, Path(args.out), args.device, args.threads,
                           args.precision, progress=not args.no_progress)
            r = read_run(path)
            s = r.summary
            rows.append([a, seed, r.status, f"{s['start_heldout_loss']:.4f}",
                         f"{s['final_heldout_loss']:.4f}",
                         f"{s['final_heldout_top1']:.3f}" if s.get("final_heldout_top1") else "-",
                         _fmt_flops(s["flops"]), f"{s['wall_s']:.1f}", str(path)])
    print(tabulate(rows, ["arm", "seed", "status", "held-out start", "held-out end", "top1",
                          "FLOPs", "train s", "folder"], tablefmt="github"))
    return 0


def comparison_rows(root: Path) -> list[list[str]]:
    runs = find_runs(root)
    groups: dict[tuple[str, str], dict[str, list]] = {}
    for r in runs:
        scale, bench, arm = r.key
        groups.setdefault((scale, bench), {}).setdefault(arm, []).append(r)
    rows = []
    for (scale, bench), arms in sorted(groups.items()):
        done = {a: [r for r in rs if r.complete] for a, rs in arms.items()}
        skipped = {a: len(rs) - len(done[a]) for a, rs in arms.items()}
        base = done.get("baseline", [])
        for arm, rs in sorted(done.items()):
            note = f"{skipped[arm]} incomplete run(s) skipped" if skipped[arm] else ""
            if arm == "baseline" or not base or not rs:
                final = analysis.mean_ci([r.curve[-1]["heldout_loss"] for r in rs])
                rows.append([scale, bench, arm, final.fmt(digits=4), "-", "-", "-", "-",
                             note or ("no completed baseline" if not base else "")])
                continue
            c = analysis.compare(rs, base)
            if c.extrapolated:
                note = (note + "; " if note else "") + f"{c.extrapolated} cost(s) extrapolated"
            rows.append([scale, bench, arm, c.arm_final.fmt(digits=4), f"{c.target:.4f}",
                         c.flops_saving.fmt(pct=True), c.wall_saving.fmt(pct=True),
                         c.loss_at_equal_flops.fmt(digits=4), note])
    return rows


def cmd_compare(args: argparse.Namespace) -> int:
    rows = comparison_rows(Path(args.results))
    if not rows:
        print(f"{args.results}: no runs found", file=sys.stderr)
        return 2
    print(tabulate(rows, ["scale", "benchmark", "arm", "final held-out loss (mean [95% CI])",
                          "target", "FLOPs saved to target", "wall time saved to target",
                          "held-out loss at equal FLOPs (arm - baseline)", "notes"],
                   tablefmt="github"))
    print(f"\nFLOP convention: {flops.CONVENTION}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suite", description=__doc__)
    p.add_argument("--benchmarks", action="append", metavar="PATH",
                   help="definition file or folder (repeatable; default: the built-in registry)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the benchmarks, their scales and arms").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="train arms of one benchmark")
    r.add_argument("benchmark")
    r.add_argument("--scale", default="tiny", choices=SCALES)
    r.add_argument("--arms", help="comma-separated arm names (default: all)")
    r.add_argument("--seeds", type=int, default=1, help="how many seeds")
    r.add_argument("--first-seed", type=int, default=0)
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    r.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    r.add_argument("--data", help="your own data: text file or folder, .npy token ids, or an "
                   "image folder with one subfolder per class")
    r.add_argument("--out", default="runs",
                   help="results root (default: runs/; committed references live in results/)")
    r.add_argument("--dry-run", action="store_true", help="price the plan, train nothing")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("compare", help="savings table of a results folder")
    c.add_argument("results", nargs="?", default="results")
    c.set_defaults(fn=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SpecError, DataError, MethodError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
