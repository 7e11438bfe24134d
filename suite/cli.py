"""`python -m suite <command>`: list, run, compare. noxfile.py wraps these commands."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tabulate import tabulate  # noqa: E402

from suite import corpus, flops  # noqa: E402
from suite.claims import ClaimsError, load_claims  # noqa: E402
from suite.data import DataError  # noqa: E402
from suite.families import FAMILIES  # noqa: E402
from suite.methods import MethodError, Train, plan  # noqa: E402
from suite.operators import OperatorError  # noqa: E402
from suite.registry import inputs_for, load_benchmarks  # noqa: E402
from suite.report import (  # noqa: E402
    CRITERIA,
    RUN_HEADERS,
    THROUGHPUT_HEADERS,
    run_rows,
    saving_cells,
    savings,
    throughput_rows,
)
from suite.results import CheckpointError, ResultsError, find_runs, read_run  # noqa: E402
from suite.spec import SCALES, Benchmark, Scale, SpecError, with_data_source  # noqa: E402


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


def cmd_methods(args: argparse.Namespace) -> int:
    from suite import methods

    print(tabulate(sorted(methods.available().items()), ["method", "what it does"],
                   tablefmt="github"))
    print(f"\nPlug-ins: an entry point in group '{methods.ENTRY_POINTS}', or method = "
          "'package.module:attribute' in a definition (README: Add a method).")
    return 0


def _fmt_flops(x: float) -> str:
    return f"{x:.3g}"


def _train_tokens(bench: Benchmark, scale: Scale) -> int | None:
    """Training tokens (images) the data offers, for passes over it; None where unknown."""
    from suite import data as dataio

    if FAMILIES[bench.family].data_kind == "images":
        try:
            found = dataio.load_images(scale.data.source, scale.data.image_size,
                                       scale.data.augment)
            return len(found.train) if hasattr(found, "augment") else len(found.train_y)
        except DataError:
            return None
    if scale.data.source == corpus.NAME:
        try:
            return corpus.load()[2]["bytes"]["train"]
        except corpus.CorpusError:
            return None
    try:
        return len(dataio.load_text(scale.data.source, scale.data.vocab_size or None).train)
    except DataError:
        return None


def _dry_run(bench: Benchmark, scale: Scale, arms: list[str], tflops: float | None) -> int:
    """Price each arm's Plan with the meter: FLOPs per level, data passes, and (given an achieved
    throughput to assume) the time it would take."""
    from suite.runner import step_cost

    fam = FAMILIES[bench.family]
    inputs = inputs_for(fam, scale, None)
    cost = step_cost(fam, scale, inputs)
    per_sample = scale.seq_len or 1
    available = _train_tokens(bench, scale)
    rows = []
    for a in arms:
        p = plan(bench.arms[a], scale, cost, fam)
        per_level: dict[int, list[int]] = {}
        for s in p.steps:
            if isinstance(s, Train):
                acc = per_level.setdefault(s.level, [0, 0])
                acc[0] += s.steps
                acc[1] += cost(s.model) * s.steps
        total = sum(f for _, f in per_level.values())
        seen = sum(n for n, _ in per_level.values()) * scale.batch_size * per_sample
        row = [a, p.method, p.train_steps, _fmt_flops(total),
               "; ".join(f"L{k}: {n} steps, {f / total:.1%}"
                         for k, (n, f) in sorted(per_level.items())),
               f"{seen:.3g}", f"{seen / available:.1f}" if available else "-"]
        if tflops:
            row.append(f"{total / (tflops * 1e12) / 60:.1f}")
        rows.append(row)
    unit = "tokens" if scale.seq_len else "images"
    headers = ["arm", "method", "train steps", "FLOPs (projected)", "per level",
               f"{unit} seen", "passes over the data"]
    if tflops:
        headers.append(f"minutes at {tflops:g} TFLOP/s")
    print(tabulate(rows, headers, tablefmt="github"))
    print(f"\nFLOP convention: {flops.CONVENTION}")
    if tflops:
        print(f"Minutes assume {tflops:g} TFLOP/s achieved on the counted FLOPs (an assumption, "
              "not a measurement); evaluation and transfers are extra.")
    return 0


def _loss(v: float | None) -> str:
    """A loss for a table; '-' where a run has none (it diverged at its first evaluation)."""
    return "-" if v is None else f"{v:.4f}"


def _benchmark(args: argparse.Namespace) -> Benchmark:
    benches = load_benchmarks(args.benchmarks)
    if args.benchmark not in benches:
        raise SpecError("(command line)", "benchmark", f"unknown benchmark {args.benchmark!r}",
                        ", ".join(benches))
    return benches[args.benchmark]


def _policy(bench: Benchmark, args: argparse.Namespace) -> Any:
    """The checkpoint policy: the definition's [checkpoint] table, the command line's first."""
    from suite.state import Policy

    c = bench.checkpoint
    every = args.checkpoint_every if args.checkpoint_every is not None else c.every_steps
    minutes = args.checkpoint_minutes if args.checkpoint_minutes is not None else \
        c.every_minutes
    if every < 0 or minutes < 0:
        raise SpecError("(command line)", "--checkpoint-every" if every < 0 else
                        "--checkpoint-minutes", "negative", "0 (off) or more")
    at = os.environ.get("SUITE_SIGNAL_AT_STEP")  # tests: a scheduler's SIGTERM, on cue
    return Policy(every, minutes, c.keep, int(at) if at else None)


def _check_data(bench: Benchmark, scale: Scale, data: str | None) -> None:
    """Read the data once before any run (runner.load_data caches it), so that a bad source
    is one line naming where it was given: --data, or the definition's key."""
    from suite.runner import load_data

    try:
        load_data(FAMILIES[bench.family], scale)
    except DataError as e:
        where = "(command line): --data" if data else \
            f"{bench.path}: scales.{scale.name}.data.source"
        raise DataError(f"{where}: {e}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from suite.runner import run_one  # imports torch models; keep `list` fast

    bench = _benchmark(args)
    scale = bench.scale(args.scale)
    if args.data:
        bench = with_data_source(bench, args.scale, args.data)
        scale = bench.scale(args.scale)
    arms = args.arms.split(",") if args.arms else list(bench.arms)
    for a in arms:
        if a not in bench.arms:
            raise SpecError(bench.path, f"arms.{a}", "no such arm", ", ".join(bench.arms))
    n_seeds = args.seeds if args.seeds is not None else scale.seeds
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    if args.dry_run:
        return _dry_run(bench, scale, arms, args.assume_tflops)
    _check_data(bench, scale, args.data)
    from suite import state as ckpt
    from suite.distributed import rank0_says, setup, teardown

    world, device = setup(args.device)  # torchrun: this rank's place and device
    policy = _policy(bench, args)
    rows = []
    completed = preempted = stopped = False
    between = ckpt.Preemption().install()  # a signal between runs, or in a run's setup
    try:
        for a, seed in ((a, seed) for a in arms for seed in seeds):
            if stopped := rank0_says(between.requested is not None, world, device):
                _stopped_between_runs(between.requested, world)
                break
            path = run_one(bench, args.scale, a, seed, Path(args.out), device, args.threads,
                           args.precision, progress=not args.no_progress, world=world,
                           accum=args.accum, compile=args.compile, resume=args.resume,
                           policy=policy)
            r = read_run(path) if world.main else None  # only rank 0 wrote it
            preempted = rank0_says(r is not None and r.status == "preempted", world, device)
            if r is not None:
                s = r.summary
                rows.append([a, seed, r.status, _loss(s.get("start_heldout_loss")),
                             _loss(s.get("final_heldout_loss") if r.complete else None),
                             f"{s['final_heldout_top1']:.3f}"
                             if s.get("final_heldout_top1") is not None else "-",
                             _fmt_flops(s["flops"]), f"{s['wall_s']:.1f}", str(path)])
            if preempted:  # the job is being stopped: no further arm or seed starts
                break
        completed = not preempted and not stopped
        if completed and rank0_says(between.requested is not None, world, device) and world.main:
            print(f"{between.requested or 'a signal on another rank'} after the last run: every "
                  "run was finished, nothing is left to resume", file=sys.stderr)
        if world.main:  # before restore: a signal while printing must not kill the process
            print(tabulate(rows, ["arm", "seed", "status", "held-out start", "held-out end",
                                  "top1", "FLOPs", "train s", "folder"], tablefmt="github"))
    finally:
        between.restore()
        teardown(completed)
    return 0 if completed and all(r[2] == "completed" for r in rows) else 1


def _stopped_between_runs(signal_name: str | None, world: Any) -> None:
    if world.main:
        from suite.runner import resume_command

        print(f"{signal_name or 'a signal on another rank'} between runs: the runs above are "
              f"kept, no further run starts; continue with:\n  {resume_command()}",
              file=sys.stderr)


SAVING_HEADERS = ["scale", "benchmark", "arm", "criterion", "target", "pairing",
                  "FLOPs saved to target", "FLOPs saved, blocks only", "wall time saved to target",
                  "criterion at equal FLOPs (arm - baseline)"]


def comparison_tables(root: Path) -> tuple[list[list], list[list], list[str]]:
    """Runs, savings against the baseline, and notes, for every scale and benchmark under root.
    Only completed runs count; the others are named in the notes."""
    groups: dict[tuple[str, str], dict[str, list]] = {}
    for r in find_runs(root):
        scale, bench, arm = r.key
        groups.setdefault((scale, bench), {}).setdefault(arm, []).append(r)
    runs, saving_rows, notes = [], [], []
    for (scale, bench), arms in sorted(groups.items()):
        runs += [[scale, bench, *row] for row in run_rows(arms)]
        found, n = savings(bench, arms, load_claims())
        notes += n
        for a in found:
            for y, c in a.by_criterion.items():
                saving_rows.append([scale, bench, a.arm, CRITERIA[y], f"{c.target:.4f}",
                                    *saving_cells(c)])
    return runs, saving_rows, notes


def render_comparison(root: Path) -> str:
    runs_rows, saving_rows, notes = comparison_tables(root)
    if not runs_rows:
        raise ResultsError(f"{root}: no runs found")
    out = [tabulate(runs_rows, ["scale", "benchmark", *RUN_HEADERS], tablefmt="github")]
    if saving_rows:
        out += ["", "Savings against the baseline (mean [95% interval] over seeds):", "",
                tabulate(saving_rows, SAVING_HEADERS, tablefmt="github")]
    out += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    out += [f"FLOP convention: {flops.CONVENTION}.",
            "Savings: where the arm's mean curve reaches the baseline's mean final value; 95% "
            "intervals by test inversion, paired by seed where seeds pair (suite/analysis.py). "
            "A miss did not reach the target within its run; ‡: a lower end censored at the "
            "run's end. A fall over the last 20% of FLOPs at or below 0 means held-out loss had "
            "stopped falling."]
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


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def cmd_gate(args: argparse.Namespace) -> int:
    from suite.gate import HEADERS, check

    ref = Path(args.reference) / args.scale
    fresh = Path(args.fresh) / args.scale
    seeds = _names(args.seeds)
    try:
        seeds = [int(n) for n in seeds] if seeds else None
    except ValueError:
        raise SpecError("(command line)", "--seeds", f"got {args.seeds!r}",
                        "comma-separated seed numbers") from None
    rows, ok = check(fresh, ref, _rules(args), _names(args.only_benchmarks),
                     _names(args.arms), seeds)
    print(tabulate(rows, HEADERS, tablefmt="github"))
    print(f"\ngate: {'pass' if ok else 'FAIL'} ({fresh} against {ref}; one-sided tests at 5%, "
          "tolerances from each benchmark's [gate] table)")
    return 0 if ok else 1


def cmd_power(args: argparse.Namespace) -> int:
    from suite.report import POWER_HEADERS, group_runs, power_rows, savings

    root = Path(args.results)
    folders = [root] if any(root.glob("*/*/seed-*/manifest.json")) else sorted(
        p for p in root.iterdir() if p.is_dir() and any(p.glob("*/*/seed-*/manifest.json"))
    ) if root.is_dir() else []
    if not folders:
        raise ResultsError(f"{root}: no runs found (a scale folder such as results/tiny, or "
                           "a results root that holds one)")
    for folder in folders:
        for bench, arms in group_runs(folder).items():
            print(f"\n## {folder.name}/{bench}\n")
            found, _ = savings(bench, arms, load_claims())
            print(tabulate(power_rows(found, args.goal), POWER_HEADERS, tablefmt="github"))
    print(f"\nNoise: SD over seeds at the crossing of the arm's mean curve with the target "
          f"(paired: of the arm - baseline difference). Seeds for a 95% half-width of "
          f"±{100 * args.goal:.0f} pt of FLOPs saved: t(n-1) x noise / sqrt(n) / (|slope| x B) "
          "(suite/analysis.py: seeds_for).")
    return 0


def cmd_check_operators(args: argparse.Namespace) -> int:
    from suite.checks import HEADERS, SURVIVAL_HEADERS, operator_exactness, settings_survival

    rows = operator_exactness()
    print(tabulate([[r[0], *(f"{v:.1e}" for v in r[1:])] for r in rows], HEADERS,
                   tablefmt="github"))
    print("\nMax relative error over parameters (round trip) or logits (drift); random models "
          "128 wide, 4 blocks, 4 heads (llama: 2 key/value heads).\n")
    print(tabulate(settings_survival(), SURVIVAL_HEADERS, tablefmt="github"))
    print("\nEvery constructor setting but the sizes (Family.settings) of a model built with "
          "non-default ones (each family's `customised`), before and after each operator.")
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    from suite.results import atomic_write_json
    from suite.runner import measure_throughput

    bench = _benchmark(args)
    folder = Path(args.out) / "throughput"
    for compiled in ((False, True) if args.compile == "both" else (args.compile == "on",)):
        r = measure_throughput(bench, args.scale, args.device, args.precision,
                               compiled, args.steps, args.warmup, args.threads)
        device = re.sub(r"[^a-z0-9]+", "-", r["environment"]["device_name"].lower()).strip("-")
        name = f"{args.benchmark}-{args.scale}-{'compiled' if compiled else 'eager'}-{device}.json"
        atomic_write_json(folder / name, r)
        print(f"wrote {folder / name}")
    rows = [r for r in throughput_rows(folder, args.scale) if r[0] == args.benchmark]
    print(tabulate(rows, THROUGHPUT_HEADERS, tablefmt="github"))
    print(f"\nBaseline model, {args.steps} timed steps after {args.warmup} warm-up steps; "
          "FLOPs as the meter counts them. MFU against the device's bf16 peak, only in bf16 and "
          "only for a device in suite/flops.py's table.")
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


def cmd_tokenize(args: argparse.Namespace) -> int:
    from suite.tokenization import tokenize

    rec = tokenize(args.source, Path(args.out), Path(args.tokenizer) if args.tokenizer else None,
                   args.train_bpe or 0, args.field, args.heldout_every, args.shard_tokens,
                   args.name)
    rows = [[k, rec[k]["documents"], rec[k]["tokens"], rec[k]["bytes"], len(rec[k]["shards"]),
             f"{rec[k]['bytes'] / rec[k]['tokens']:.3f}"] for k in ("train", "heldout")]
    print(tabulate(rows, ["split", "documents", "tokens", "bytes", "shards", "bytes/token"],
                   tablefmt="github"))
    files = rec["files"]
    skipped = ", ".join(f"{n} {s}" for s, n in sorted(files.get("skipped", {}).items()))
    print(f"\n{args.out}: {files['read']} file(s) read" + (f", skipped {skipped}" if skipped
                                                           else "")
          + f"; tokenizer {rec['tokenizer']['file']} (vocabulary {rec['tokenizer']['vocab_size']},"
          f" sha256 {rec['tokenizer']['sha256'][:12]}); train with --data {args.out}")
    return 0


def _tokenize_parser(sub: argparse._SubParsersAction) -> None:
    tk = sub.add_parser("tokenize", help="text, .jsonl or .parquet -> token shards (HF "
                        "tokenizers), once")
    tk.add_argument("source", help="a text file, a folder (its .txt, .md, .rst, .text, "
                    "suffix-less, .jsonl and .parquet files), or a glob such as 'src/**/*.py'")
    tk.add_argument("--out", required=True, help="an empty folder for the shards and "
                    "tokens.json")
    how = tk.add_mutually_exclusive_group(required=True)
    how.add_argument("--tokenizer", help="a tokenizer.json (GPT-2's, Llama's, ...)")
    how.add_argument("--train-bpe", type=int, metavar="VOCAB", help="train a byte-level BPE "
                     "of VOCAB ids on the training documents here")
    tk.add_argument("--field", default="text", help=".jsonl key / .parquet column of the "
                    "text (default: text)")
    tk.add_argument("--heldout-every", type=at_least(2), default=10, help="document i is held out "
                    "when i %% N == N - 1 (default: 10)")
    tk.add_argument("--shard-tokens", type=at_least(1), default=10**8,
                    help="ids per shard (default: 1e8, as modded-nanogpt)")
    tk.add_argument("--name", default="tokens", help="shard name prefix (default: tokens)")
    tk.set_defaults(fn=cmd_tokenize)


def at_least(low: float, kind: type = int, high: int | None = None) -> Callable[[str], float]:
    """An argparse type: an int >= `low` (and <= `high`, when given), or (kind=float) a number
    strictly > `low`; anything else is one line naming the option and what is allowed
    (argparse adds "argument --NAME"), never a traceback later."""
    what = f"an integer >= {low}" if kind is int else f"a number > {low}"
    what += f" and <= {high}" if high is not None else ""

    def parse(text: str) -> float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}") from None
        if (kind is int and v < low) or (kind is not int and not v > low) or \
                (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}")
        return v

    return parse


def device_arg(text: str) -> str:
    """An argparse type for --device: cpu, cuda or cuda:N, and only a CUDA device this machine
    has (otherwise one line, not a driver error from deep inside torch at the first tensor)."""
    import torch

    allowed = "cpu, cuda, cuda:N"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {allowed}") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {allowed}")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f"got {text!r}, but torch sees no CUDA device on "
                                             "this machine; allowed here: cpu")
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"got {text!r}; this machine has cuda:0 to "
                                             f"cuda:{n - 1}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suite", description=__doc__)
    p.add_argument("--benchmarks", action="append", metavar="PATH",
                   help="definition file or folder (repeatable; default: the built-in registry)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the benchmarks, their scales and arms").set_defaults(fn=cmd_list)
    sub.add_parser("methods", help="the methods this installation knows, plug-ins included"
                   ).set_defaults(fn=cmd_methods)
    _run_parser(sub)
    _results_parsers(sub)
    _tokenize_parser(sub)
    for command in sub.choices.values():  # also after the command, where users write it
        command.add_argument("--benchmarks", action="append", metavar="PATH",
                             default=argparse.SUPPRESS, help="as before the command")
    return p


def _run_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="train arms of one benchmark")
    r.add_argument("benchmark")
    r.add_argument("--scale", default="tiny", choices=SCALES)
    r.add_argument("--arms", help="comma-separated arm names (default: all)")
    r.add_argument("--seeds", type=at_least(1, high=10_000), default=None,
                   help="how many seeds (default: the "
                   "scale's `seeds`, from the power analysis at tiny; else 1)")
    r.add_argument("--first-seed", type=at_least(0, high=2**31), default=0)
    r.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    r.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads (default: all cores)")
    r.add_argument("--data", help="your own data: a text file, folder or glob; token shards "
                   "(.npy, .bin, a folder or glob of them: see `tokenize`); or an image folder "
                   "with one subfolder per class")
    r.add_argument("--out", default="runs",
                   help="results root (default: runs/; committed references live in results/)")
    r.add_argument("--accum", type=at_least(1), default=1,
                   help="gradient accumulation: micro-batches "
                   "per step and process (the global batch stays the definition's)")
    r.add_argument("--compile", action="store_true", help="torch.compile the training model")
    r.add_argument("--dry-run", action="store_true", help="price the plan, train nothing")
    r.add_argument("--assume-tflops", type=at_least(0, float), metavar="T",
                   help="with --dry-run: also the minutes each arm takes at T TFLOP/s achieved")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--resume", action="store_true", help="go on from each run's newest "
                   "checkpoint; completed runs are kept, runs never started start")
    r.add_argument("--checkpoint-every", type=at_least(0), metavar="STEPS",
                   help="write the run state "
                   "every STEPS training steps (default: the definition's [checkpoint])")
    r.add_argument("--checkpoint-minutes", type=at_least(0, float), metavar="M",
                   help="... or every M "
                   "minutes of wall time (default 30; SIGTERM, SIGUSR1 and SIGINT always write "
                   "it and stop the run as preempted)")
    r.set_defaults(fn=cmd_run)


def _results_parsers(sub: Any) -> None:
    """compare, check-operators, throughput, corpus, report, power and gate."""
    c = sub.add_parser("compare", help="savings table of a results folder")
    c.add_argument("results", nargs="?", default="runs")
    c.add_argument("--update", metavar="FILE", help="write the tables between the markers "
                   "<!-- compare RESULTS --> and <!-- end compare RESULTS --> of FILE")
    c.set_defaults(fn=cmd_compare)
    sub.add_parser("check-operators", help="exactness of paper 1's operators per family"
                   ).set_defaults(fn=cmd_check_operators)
    t = sub.add_parser("throughput", help="speed of the baseline's training step: "
                       "tokens/s, TFLOP/s, MFU")
    t.add_argument("benchmark")
    t.add_argument("--scale", default="tiny", choices=SCALES)
    t.add_argument("--device", type=device_arg, default="cpu")
    t.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    t.add_argument("--compile", default="off", choices=("off", "on", "both"))
    t.add_argument("--steps", type=at_least(1), default=30, help="timed steps")
    t.add_argument("--warmup", type=at_least(0), default=10, help="untimed steps first")
    t.add_argument("--threads", type=at_least(1), default=None)
    t.add_argument("--out", default="runs", help="writes OUT/throughput/<bench>-<scale>-*.json")
    t.set_defaults(fn=cmd_throughput)
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
    pw = sub.add_parser("power", help="noise per seed and the seeds a ±5 pt saving needs")
    pw.add_argument("results", nargs="?", default="results/tiny",
                    help="a scale folder, or a root holding scale folders (default: "
                    "results/tiny)")
    pw.add_argument("--goal", type=at_least(0, float), default=0.05,
                    help="wanted 95%% half-width of FLOPs saved (fraction, default 0.05)")
    pw.set_defaults(fn=cmd_power)
    g = sub.add_parser("gate", help="exit 1 when a saving regressed against committed results")
    g.add_argument("--fresh", default="runs", help="fresh results root (default: runs)")
    g.add_argument("--reference", default="results", help="committed root (default: results)")
    g.add_argument("--scale", default="tiny", choices=SCALES)
    g.add_argument("--only", dest="only_benchmarks", metavar="BENCHMARKS",
                   help="comma-separated benchmarks to gate (default: every reference)")
    g.add_argument("--arms", help="comma-separated arms to gate, baseline included (default: "
                   "all)")
    g.add_argument("--seeds", help="comma-separated reference seeds to gate (default: all; "
                   "seed 0 alone is enough for the exact tier)")
    g.set_defaults(fn=cmd_gate)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SpecError, DataError, MethodError, OperatorError, ResultsError, ClaimsError,
            corpus.CorpusError, CheckpointError) as e:  # a run it stopped is recorded failed
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C (the first asks for a checkpoint): stop at once
        print("python -m suite: interrupted; a run cut off is recorded as interrupted or left "
              "without a summary, never counted as a result", file=sys.stderr)
        return 130
