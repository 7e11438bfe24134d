"""`python -m suite <command>`: list, run, compare. noxfile.py wraps these commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tabulate import tabulate  # noqa: E402

from suite import analysis, corpus, flops  # noqa: E402
from suite.claims import ClaimsError  # noqa: E402
from suite.data import DataError  # noqa: E402
from suite.families import FAMILIES  # noqa: E402
from suite.methods import MethodError, Train, plan  # noqa: E402
from suite.registry import inputs_for, load_benchmarks  # noqa: E402
from suite.report import CRITERIA  # noqa: E402
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
    from suite.runner import run_one, step_cost  # imports torch models; keep `list` fast

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
        inputs = inputs_for(fam, scale, None)
        cost = step_cost(fam, scale, inputs)
        rows = []
        for a in arms:
            p = plan(bench.arms[a], scale, cost)
            per_level: dict[int, list[int]] = {}
            for s in p.steps:
                if isinstance(s, Train):
                    acc = per_level.setdefault(s.level, [0, 0])
                    acc[0] += s.steps
                    acc[1] += cost(s.model) * s.steps
            total = sum(f for _, f in per_level.values())
            rows.append([a, p.method, p.train_steps, _fmt_flops(total),
                         "; ".join(f"L{k}: {n} steps, {f / total:.1%}"
                                   for k, (n, f) in sorted(per_level.items()))])
        print(tabulate(rows, ["arm", "method", "train steps", "FLOPs (projected)",
                              "per level"], tablefmt="github"))
        print(f"\nFLOP convention: {flops.CONVENTION}")
        return 0
    from suite.distributed import setup

    world, device = setup(args.device)  # torchrun: this rank's place and device
    rows = []
    for a in arms:
        for seed in seeds:
            path = run_one(bench, args.scale, a, seed, Path(args.out), device, args.threads,
                           args.precision, progress=not args.no_progress, world=world,
                           accum=args.accum, compile=args.compile)
            if not world.main:
                continue
            r = read_run(path)
            s = r.summary
            rows.append([a, seed, r.status, f"{s['start_heldout_loss']:.4f}",
                         f"{s['final_heldout_loss']:.4f}",
                         f"{s['final_heldout_top1']:.3f}"
                         if s.get("final_heldout_top1") is not None else "-",
                         _fmt_flops(s["flops"]), f"{s['wall_s']:.1f}", str(path)])
    if world.main:
        print(tabulate(rows, ["arm", "seed", "status", "held-out start", "held-out end", "top1",
                              "FLOPs", "train s", "folder"], tablefmt="github"))
    return 0 if all(r[2] == "completed" for r in rows) else 1


RUN_HEADERS = ["scale", "benchmark", "arm", "seeds", "completed", "held-out loss start",
               "held-out loss end", "top1 end", "FLOPs", "train s / seed", "device"]
SAVING_HEADERS = ["scale", "benchmark", "arm", "criterion", "target loss",
                  "FLOPs saved to target", "FLOPs saved, blocks only", "wall time saved to target",
                  "loss at equal FLOPs (arm - baseline)", "notes"]


def comparison_tables(root: Path) -> tuple[list[list], list[list]]:
    """Per arm: what ran and where it ended; per non-baseline arm: savings against the baseline.
    Only completed runs count; the others are listed as such."""
    groups: dict[tuple[str, str], dict[str, list]] = {}
    for r in find_runs(root):
        scale, bench, arm = r.key
        groups.setdefault((scale, bench), {}).setdefault(arm, []).append(r)
    runs_rows, saving_rows = [], []
    for (scale, bench), arms in sorted(groups.items()):
        done = {a: [r for r in rs if r.complete] for a, rs in arms.items()}
        for arm, rs in sorted(arms.items()):
            ok = done[arm]
            start = analysis.mean_ci([r.curve[0]["heldout_loss"] for r in ok])
            end = analysis.mean_ci([r.curve[-1]["heldout_loss"] for r in ok])
            top1 = [r.curve[-1]["heldout_top1"] for r in ok if "heldout_top1" in r.curve[-1]]
            runs_rows.append([
                scale, bench, arm, ",".join(str(r.seed) for r in sorted(rs, key=lambda r: r.seed)),
                f"{len(ok)}/{len(rs)}", f"{start.mean:.4f}" if ok else "-", end.fmt(digits=4),
                analysis.mean_ci(top1).fmt(digits=3) if top1 else "-",
                f"{ok[0].summary['flops']:.3g}" if ok else "-",
                f"{sum(r.summary['wall_s'] for r in ok) / len(ok):.1f}" if ok else "-",
                ", ".join(sorted({r.manifest['environment']['device_name'] for r in rs})),
            ])
        base = done.get("baseline", [])
        for arm, rs in sorted(done.items()):
            if arm == "baseline":
                continue
            if not base or not rs:
                saving_rows.append([scale, bench, arm, "-", "-", "-", "-", "-", "-",
                                    "no completed baseline" if not base else "no completed run"])
                continue
            for y, criterion in CRITERIA.items():
                c = analysis.compare(rs, base, y=y)
                note = f"{c.extrapolated} cost(s) extrapolated" if c.extrapolated else ""
                saving_rows.append([scale, bench, arm, criterion, f"{c.target:.4f}",
                                    c.flops_saving.fmt(pct=True),
                                    c.flops_blocks_saving.fmt(pct=True),
                                    c.wall_saving.fmt(pct=True),
                                    c.loss_at_equal_flops.fmt(digits=4), note])
    return runs_rows, saving_rows


def render_comparison(root: Path) -> str:
    runs_rows, saving_rows = comparison_tables(root)
    if not runs_rows:
        raise ResultsError(f"{root}: no runs found")
    out = [tabulate(runs_rows, RUN_HEADERS, tablefmt="github")]
    if saving_rows:
        out += ["", "Savings against the baseline (mean [95% interval] over seeds):", "",
                tabulate(saving_rows, SAVING_HEADERS, tablefmt="github")]
    out += ["", f"FLOP convention: {flops.CONVENTION}.",
            "Intervals: 95% Student t over seeds (savings: delta method, Welch df)."]
    return "\n".join(out)


def cmd_compare(args: argparse.Namespace) -> int:
    text = render_comparison(Path(args.results))
    if args.update:
        path = Path(args.update)
        begin, end = f"<!-- compare {args.results} -->", f"<!-- end compare {args.results} -->"
        doc = path.read_text()
        if begin not in doc or end not in doc:
            raise ResultsError(f"{path}: markers {begin} ... {end} not found")
        head, rest = doc.split(begin, 1)
        path.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
        print(f"updated {path}")
    else:
        print(text)
    return 0


def _rules(args: argparse.Namespace) -> dict:
    return {name: b.gate for name, b in load_benchmarks(args.benchmarks).items()}


def cmd_report(args: argparse.Namespace) -> int:
    from suite.claims import load_claims
    from suite.report import headline, write_report

    root = Path(args.results) / args.scale
    claims = load_claims()
    path = write_report(root, claims, _rules(args), args.scale, plots=not args.no_plots)
    print(f"wrote {path}")
    if args.update_readme:
        readme = Path(args.update_readme)
        begin = f"<!-- headline {args.scale} -->"
        end = f"<!-- end headline {args.scale} -->"
        doc = readme.read_text()
        if begin not in doc or end not in doc:
            raise ResultsError(f"{readme}: markers {begin} ... {end} not found")
        table = headline(root, claims, _rules(args), args.scale)
        head, rest = doc.split(begin, 1)
        readme.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")
        print(f"updated {readme}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from suite.gate import HEADERS, check

    ref = Path(args.reference) / args.scale
    fresh = Path(args.fresh) / args.scale
    rows, ok = check(fresh, ref, _rules(args))
    print(tabulate(rows, HEADERS, tablefmt="github"))
    print(f"\ngate: {'pass' if ok else 'FAIL'} ({fresh} against {ref}; one-sided tests at 5%, "
          "tolerances from each benchmark's [gate] table)")
    return 0 if ok else 1


def cmd_check_operators(args: argparse.Namespace) -> int:
    from suite.checks import HEADERS, operator_exactness

    rows = operator_exactness()
    print(tabulate([[r[0], *(f"{v:.1e}" for v in r[1:])] for r in rows], HEADERS,
                   tablefmt="github"))
    print("\nMax relative error over parameters (round trip) or logits (drift); random models "
          "128 wide, 4 blocks, 4 heads.")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    path = Path(args.dir) if args.dir else corpus.default_dir()
    if args.action == "build":
        record = corpus.build(path)
    else:
        record = corpus.load(path)[2]
    rows = [[p["name"], p["package"], p["version"], p["licence"], p["documents"],
             f"{p['train_bytes'] / 1e6:.1f}", f"{p['heldout_bytes'] / 1e6:.2f}",
             ", ".join(p["heldout"])] for p in record["parts"]]
    print(tabulate(rows, ["part", "package", "version", "licence", "documents", "train MB",
                          "held-out MB", "held-out documents"], tablefmt="github"))
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"\n{path}: {size / 1e6:.1f} MB on disk; train sha256 {record['sha256']['train']}")
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
    r.add_argument("--accum", type=int, default=1, help="gradient accumulation: micro-batches "
                   "per step and process (the global batch stays the definition's)")
    r.add_argument("--compile", action="store_true", help="torch.compile the training model")
    r.add_argument("--dry-run", action="store_true", help="price the plan, train nothing")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("compare", help="savings table of a results folder")
    c.add_argument("results", nargs="?", default="runs")
    c.add_argument("--update", metavar="FILE", help="write the tables between the markers "
                   "<!-- compare RESULTS --> and <!-- end compare RESULTS --> of FILE")
    c.set_defaults(fn=cmd_compare)
    sub.add_parser("check-operators", help="exactness of paper 1's operators per family"
                   ).set_defaults(fn=cmd_check_operators)
    cp = sub.add_parser("corpus", help=f"build or show the offline text corpus '{corpus.NAME}'")
    cp.add_argument("action", choices=("build", "show"))
    cp.add_argument("--dir", help=f"where it lives (default: {corpus.default_dir()})")
    cp.set_defaults(fn=cmd_corpus)
    rp = sub.add_parser("report", help="results/<scale>/REPORT.md with plots")
    rp.add_argument("--results", default="results", help="results root (default: results)")
    rp.add_argument("--scale", default="tiny", choices=SCALES)
    rp.add_argument("--no-plots", action="store_true")
    rp.add_argument("--update-readme", metavar="FILE", help="write the headline table between "
                    "<!-- headline SCALE --> and <!-- end headline SCALE --> of FILE")
    rp.set_defaults(fn=cmd_report)
    g = sub.add_parser("gate", help="exit 1 when a saving regressed against committed results")
    g.add_argument("--fresh", default="runs", help="fresh results root (default: runs)")
    g.add_argument("--reference", default="results", help="committed root (default: results)")
    g.add_argument("--scale", default="tiny", choices=SCALES)
    g.set_defaults(fn=cmd_gate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SpecError, DataError, MethodError, ResultsError, ClaimsError, corpus.CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
