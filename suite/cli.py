"""`python -m suite <command>`: the command line, a thin face: each command parses its
arguments, calls one function of the wings (suite/run, suite/judge, suite/data) and prints what
it returns. Every error of the suite (suite.errors.SuiteError) is one line and exit 2.
noxfile.py wraps these commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tabulate import tabulate  # noqa: E402

from suite import cli_train  # noqa: E402
from suite.arguments import OneLineParser, at_least, device_arg  # noqa: E402
from suite.data import corpus  # noqa: E402
from suite.data.split import HELDOUT_EVERY  # noqa: E402
from suite.errors import SuiteError  # noqa: E402
from suite.judge.claims import load_claims  # noqa: E402
from suite.resolved import gate_rules  # noqa: E402
from suite.spec import SCALES, Benchmark, SpecError  # noqa: E402


def _size(model: dict[str, int]) -> str:
    return "-".join(str(model[k]) for k in ("layers", "hidden", "heads") if k in model) + (
        f"/p{model['patch']}" if "patch" in model else "")


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for b in load_benchmarks(args.benchmarks).values():
        for s in b.scales.values():
            rows.append([b.name, b.family, s.name, _size(s.model), s.seq_len or "-", s.batch_size,
                         s.steps, s.data.source, s.seeds, ", ".join(b.arms)])
    print(tabulate(rows, ["benchmark", "family", "scale", "L-H-A", "seq", "batch", "steps", "data",
                          "seeds", "arms"], tablefmt="github"))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from suite import methods

    print(tabulate(sorted(methods.available().items()), ["method", "what it does"],
                   tablefmt="github"))
    print(f"\nPlug-ins: an entry point in group '{methods.ENTRY_POINTS}', or method = "
          "'package.module:attribute' in a definition (docs/extending.md).")
    return 0


def _benchmark(args: argparse.Namespace) -> Benchmark:
    benches = load_benchmarks(args.benchmarks)
    if args.benchmark not in benches:
        raise SpecError("(command line)", "benchmark", f"unknown benchmark {args.benchmark!r}",
                        ", ".join(benches))
    return benches[args.benchmark]


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _rules(args: argparse.Namespace) -> dict:
    """Each benchmark's [gate] rule, read without torch: the judging commands need no model."""
    return gate_rules(args.benchmarks)


def load_benchmarks(paths: list[str] | None) -> dict[str, Benchmark]:
    from suite.registry import load_benchmarks as load  # families and methods: imports torch

    return load(paths)


def cmd_compare(args: argparse.Namespace) -> int:
    from suite.judge.compare import render_comparison
    from suite.judge.report import splice

    text = render_comparison(Path(args.results))
    if args.update:
        splice(Path(args.update), f"compare {args.results}", text)
        print(f"updated {args.update}")
    else:
        print(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from suite.judge.report import update_readme, write_report

    root, claims = Path(args.results) / args.scale, load_claims()
    print(f"wrote {write_report(root, claims, _rules(args), args.scale, not args.no_plots)}")
    if args.update_readme:
        filled = update_readme(Path(args.update_readme), root, claims, _rules(args), args.scale)
        print(f"updated {args.update_readme}: {', '.join(filled)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from suite.judge.status import status

    print(status(Path(args.results)))
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from suite.judge.gate import HEADERS, NothingToCompare, check

    ref, fresh = Path(args.reference) / args.scale, Path(args.fresh) / args.scale
    seeds = _names(args.seeds)
    try:
        seeds = [int(n) for n in seeds] if seeds else None
    except ValueError:
        raise SpecError("(command line)", "--seeds", f"got {args.seeds!r}",
                        "comma-separated seed numbers") from None
    try:
        rows, ok = check(fresh, ref, _rules(args), _names(args.only_benchmarks),
                         _names(args.arms), seeds)
    except NothingToCompare as e:  # the table says what was not compared; then one line
        print(tabulate(e.rows, HEADERS, tablefmt="github"))
        raise
    print(tabulate(rows, HEADERS, tablefmt="github"))
    print(f"\ngate: {'pass' if ok else 'FAIL'} ({fresh} against {ref}; one-sided tests at 5%, "
          "tolerances from each benchmark's [gate] table)")
    if args.json:
        from suite.results import atomic_write_json

        atomic_write_json(Path(args.json), {
            "label": args.label or "", "headers": HEADERS, "rows": rows, "ok": ok,
            "exit": 0 if ok else 1, "fresh": str(fresh), "reference": str(ref)})
    return 0 if ok else 1


def cmd_power(args: argparse.Namespace) -> int:
    from suite.judge.compare import power_report

    print(power_report(Path(args.results), args.goal))
    return 0


def cmd_check_operators(args: argparse.Namespace) -> int:
    from suite.checks import (
        HEADERS,
        INHERITANCE_HEADERS,
        INHERITANCE_NOTE,
        SURVIVAL_HEADERS,
        inheritance,
        operator_exactness,
        settings_survival,
    )

    rows = operator_exactness()
    print(tabulate([[r[0], *(f"{v:.1e}" for v in r[1:])] for r in rows], HEADERS,
                   tablefmt="github"))
    print("\nMax relative error over parameters (round trip) or logits (drift); random models "
          "128 wide, 4 blocks, 4 heads (llama: 2 key/value heads).\n")
    print(tabulate(settings_survival(), SURVIVAL_HEADERS, tablefmt="github"))
    print("\nEvery constructor setting but the sizes (Family.settings) of a model built with "
          "non-default ones (each family's `customised`), before and after each operator.")
    print()
    print(tabulate(inheritance(), INHERITANCE_HEADERS, tablefmt="github"))
    print("\n" + INHERITANCE_NOTE)
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    from suite.judge.report import THROUGHPUT_HEADERS, throughput_rows
    from suite.run.throughput import record_throughput

    modes = (False, True) if args.compile == "both" else (args.compile == "on",)
    for path in record_throughput(_benchmark(args), args.scale, Path(args.out), modes,
                                  device=args.device, precision=args.precision,
                                  steps=args.steps, warmup=args.warmup, threads=args.threads):
        print(f"wrote {path}")
    rows = [r for r in throughput_rows(Path(args.out) / "throughput", args.scale)
            if r[0] == args.benchmark]
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
    from suite.data.tokenize import tokenize

    rec = tokenize(args.source, Path(args.out), Path(args.tokenizer) if args.tokenizer else None,
                   args.train_bpe or 0, args.field, args.heldout_every, args.shard_tokens,
                   args.name, args.separator)
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
    tk.add_argument("--heldout-every", type=at_least(2), default=HELDOUT_EVERY,
                    help="document i is held out when i %% N == N - 1 (default: "
                    f"{HELDOUT_EVERY})")
    tk.add_argument("--shard-tokens", type=at_least(1), default=10**8,
                    help="ids per shard (default: 1e8, as modded-nanogpt)")
    tk.add_argument("--name", default="tokens", help="shard name prefix (default: tokens)")
    tk.add_argument("--separator", metavar="TEXT", default=None, help="put TEXT before each "
                    "document: a token of the tokenizer's vocabulary, or text to encode; '' joins "
                    "documents with nothing (default: the tokenizer's end-of-text token, else "
                    "nothing, said)")
    tk.set_defaults(fn=cmd_tokenize)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m suite", description=__doc__)
    p.add_argument("--benchmarks", action="append", metavar="PATH",
                   help="read the definitions from this file or folder instead of the built-in "
                   "registry (repeatable; give suite/definitions too to keep the built-in ones)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    sub.add_parser("list", help="the benchmarks, their scales and arms").set_defaults(fn=cmd_list)
    sub.add_parser("methods", help="the methods this installation knows, plug-ins included"
                   ).set_defaults(fn=cmd_methods)
    cli_train.add_parsers(sub)
    _results_parsers(sub)
    _tokenize_parser(sub)
    for command in sub.choices.values():  # also after the command, where users write it
        command.add_argument("--benchmarks", action="append", metavar="PATH",
                             dest="benchmarks_after", help="as before the command")
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with --benchmarks given before and after the command taken together and
    the options that only mean something beside another one refused when given alone."""
    p = parser()
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: what a job repeats
    args.benchmarks = (args.benchmarks or []) + (args.benchmarks_after or []) or None
    alone = [(flag, need) for flag, given, need, has in (
        ("--assume-tflops", getattr(args, "assume_tflops", None) is not None, "--dry-run",
         getattr(args, "dry_run", False)),
        ("--label", getattr(args, "label", None) is not None, "--json",
         getattr(args, "json", None) is not None)) if given and not has]
    for flag, need in alone:
        p.error(f"argument {flag}: only means something with {need}")
    return args


def _results_parsers(sub: Any) -> None:
    """compare, check-operators, throughput, corpus, report, power and gate."""
    c = sub.add_parser("compare", help="savings table of a results folder")
    c.add_argument("results", nargs="?", default="runs")
    c.add_argument("--update", metavar="FILE", help="write the tables between the markers "
                   "<!-- compare RESULTS --> and <!-- end compare RESULTS --> of FILE")
    c.set_defaults(fn=cmd_compare)
    sub.add_parser("check-operators", help="per family: the operators' exactness, the settings "
                   "they keep and what a built model inherits"
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
                    "<!-- headline SCALE --> and <!-- end headline SCALE --> of FILE, and the "
                    "sample of each <!-- sample SCALE BENCH --> block")
    rp.set_defaults(fn=cmd_report)
    pw = sub.add_parser("power", help="noise per seed and the seeds a ±5 pt saving needs")
    pw.add_argument("results", nargs="?", default="results/tiny",
                    help="a scale folder, or a root holding scale folders (default: "
                    "results/tiny)")
    pw.add_argument("--goal", type=at_least(0, float), default=0.05,
                    help="wanted 95%% half-width of FLOPs saved (fraction, default 0.05)")
    pw.set_defaults(fn=cmd_power)
    st = sub.add_parser("status", help="where the runs of a results folder stand (any "
                        "executor, a Slurm array included): done, running, stopped, failed, ETA")
    st.add_argument("results", nargs="?", default="runs")
    st.set_defaults(fn=cmd_status)
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
    g.add_argument("--json", metavar="FILE", help="also write the rows and the verdict as JSON "
                   "(what the report's table of injected regressions reads)")
    g.add_argument("--label", help="with --json: what the record is, e.g. 'alpha1 (fbc0284)'")
    g.set_defaults(fn=cmd_gate)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return args.fn(args)
    except SuiteError as e:  # one line naming the file and key; a run it stopped is recorded
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be written or read (a file where a folder is
        # expected, a full disk, no permission): its name and the system's reason, one line
        if e.filename is None:
            raise
        # of a rename (an atomic write), the destination: the name the user gave
        print(f"error: {e.filename2 or e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C (the first asks for a checkpoint): stop at once
        print("python -m suite: interrupted; a run cut off is recorded as interrupted or left "
              "without a summary, never counted as a result", file=sys.stderr)
        return 130
