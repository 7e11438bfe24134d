"""The commands that train: `run` (arms x seeds, with the committed tuning of the scale, or a
declared sweep) and `tune` (a definition's [tuning] protocol). Parsed here, executed by
suite/run; torch is imported only once a command trains."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from suite import protocol, tuning_record
from suite.arguments import at_least, device_arg
from suite.errors import SuiteError
from suite.judge.matched import MIN_SEEDS
from suite.spec import SCALES, Benchmark, Scale, SpecError, with_data_source


def _names(text: str | None) -> list[str] | None:
    """Comma-separated names; a variant's own commas stay in it (`vcycle@alpha=0.5,lr=0.002`
    is one arm: a piece `key=value` after a variant continues it)."""
    out: list[str] = []
    for t in (x.strip() for x in (text or "").split(",")):
        if t and out and protocol.SEP in out[-1] and "=" in t and protocol.SEP not in t:
            out[-1] += "," + t
        elif t:
            out.append(t)
    return out or None


def _benchmark(args: argparse.Namespace) -> Benchmark:
    from suite.registry import load_benchmarks  # families and methods: imports torch

    benches = load_benchmarks(args.benchmarks)
    if args.benchmark not in benches:
        raise SpecError("(command line)", "benchmark", f"unknown benchmark {args.benchmark!r}",
                        ", ".join(benches))
    bench = benches[args.benchmark]
    return with_data_source(bench, args.scale, args.data) if args.data else bench


def arms_and_seeds(bench: Benchmark, scale: Scale, args: argparse.Namespace,
                   record: dict[str, Any]) -> tuple[Benchmark, list[str], list[int]]:
    """The arms (declared ones, variants such as `vcycle@alpha=0.5`, or a declared sweep's) and
    seeds a `run` asks for, and the definition with its variants added. Raises SpecError naming
    an unknown arm or sweep, or reported seeds that the tuning chose its values on."""
    seeds_default = scale.seeds
    given = [f for f, on in (("--arms", args.arms), ("--sweep", args.sweep),
                             ("--matched", args.matched)) if on]
    if len(given) > 1:
        raise SpecError("(command line)", given[0], f"given with {given[1]}, which names the "
                        "arms too", "one of --arms, --sweep, --matched")
    if args.matched:
        arms = _matched_arms(bench, scale, args, record)
        seeds_default = MIN_SEEDS
    elif args.sweep:
        sweep = bench.sweeps.get(args.sweep)
        if sweep is None or scale.name not in sweep.scales:
            here = [n for n, s in bench.sweeps.items() if scale.name in s.scales]
            raise SpecError(bench.path, f"sweeps.{args.sweep}", "no such sweep" if sweep is None
                            else f"declared at {', '.join(sweep.scales)}, not at {scale.name}",
                            f"at {scale.name}: {', '.join(here) or 'none declared'}")
        arms = [name for _, name in protocol.sweep_arms(bench, sweep, scale.name)]
        seeds_default = sweep.seeds or scale.seeds
    else:
        arms = _canonical(bench, _names(args.arms), scale, args.trial) or list(bench.arms)
    where = "(command line)" if args.arms else ""  # else the definition's sweeps and arms
    bench = protocol.with_arms(bench, arms, where)
    _check_variants(bench, scale, arms, where)
    n = args.seeds if args.seeds is not None else seeds_default
    seeds = list(range(args.first_seed, args.first_seed + n))
    pilots = set(bench.tuning.pilot_seeds) if bench.tuning else set()
    if record.get("status") == "tuned" and (clash := sorted(pilots & set(seeds))):
        raise SpecError("(command line)", "--first-seed/--seeds", f"seeds {clash} are the "
                        "tuning's pilot seeds: a choice is never reported on the runs it was "
                        "made on", f"seeds outside {sorted(pilots)}")
    return bench, arms, seeds


def _canonical(bench: Benchmark, names: list[str] | None, scale: Scale,
               trial: bool = False) -> list[str] | None:
    """The arms asked for, each variant named as the suite writes it, and one whose values are
    what its arm already runs named as that arm (protocol.runs_as; a tuning trial keeps its
    name); SpecError for a malformed variant or an arm asked for twice (two runs of one folder)."""
    if not names:
        return None
    out = []
    for n in names:
        try:
            name = protocol.canonical(n)
        except ValueError as e:
            raise SpecError("(command line)", f"--arms: {n}", str(e),
                            "an arm, or arm@key=value,key=value") from None
        arm = name if trial else protocol.runs_as(bench, name, scale)
        if arm != name:
            print(f"note: {name} runs as {arm}: its values are what {arm} already runs",
                  flush=True)
        out.append(arm)
    if twice := sorted({a for a in out if out.count(a) > 1}):
        raise SpecError("(command line)", "--arms", f"{', '.join(twice)} asked for twice",
                        "each arm once")
    return out


def _check_variants(bench: Benchmark, scale: Scale, arms: list[str], where: str) -> None:
    """Every variant plans at this scale, before any run or job starts (the declared arms were
    checked when the definition loaded). Raises SpecError naming arms.<variant>.<key>."""
    from suite import methods
    from suite.families import FAMILIES

    for a in arms:
        if protocol.is_variant(a):
            try:
                methods.plan(bench.arms[a], scale, family=FAMILIES[bench.family])
            except methods.MethodError as e:
                raise SpecError(where or bench.path, e.key, e.problem) from None


def _matched_arms(bench: Benchmark, scale: Scale, args: argparse.Namespace,
                  record: dict[str, Any]) -> list[str]:
    """The matched baselines the verdicts of the runs already in --out ask for (suite/judge/
    analysis.py, "Matched budget"); SpecError when there are none to run, or when the
    baseline's runs there were tuned otherwise than these would be (like with like only)."""
    from suite.judge.claims import load_claims
    from suite.judge.savings import group_runs, matched_needed

    root = Path(args.out) / scale.name
    arms = group_runs(root).get(bench.name, {}) if root.is_dir() else {}
    mine = tuning_record.provenance(record, protocol.BASELINE)
    for r in arms.get(protocol.BASELINE, [])[:1]:
        theirs = r.manifest.get("tuning") or {"status": "untuned"}
        if (theirs.get("status"), theirs.get("values")) != (mine["status"], mine.get("values")):
            t, m = (" ".join(str(x) for x in (d.get("status"), d.get("values")) if x)
                    for d in (theirs, mine))
            raise SpecError("(command line)", "--matched", f"the baseline's runs in {root} "
                            f"trained {t}; its matched baselines would train {m}",
                            "the same --tuning (or --untuned) as those runs")
    need = matched_needed(bench.name, arms, load_claims(), bench.gate) if arms else []
    if not need:
        raise SpecError("(command line)", "--matched", f"no arm of {bench.name} in "
                        f"{Path(args.out) / scale.name} has a saving to check"
                        if arms else f"no runs of {bench.name} in {Path(args.out) / scale.name}",
                        "run the arms first; then --matched trains the baselines their verdicts "
                        "need")
    print(f"matched baselines the verdicts need: {', '.join(need)}", flush=True)
    return need


def _options(args: argparse.Namespace, bench: Benchmark, tuning: dict[str, dict]) -> Any:
    from suite.run.context import RunOptions
    from suite.run.distributed import setup
    from suite.run.grid import checkpoint_policy

    world, device = setup(args.device)  # torchrun: this rank's place and device
    return RunOptions(device=device, threads=args.threads, precision=args.precision,
                      progress=not args.no_progress, world=world, accum=args.accum,
                      compile=args.compile, resume=args.resume, tuning=tuning,
                      track=args.track,
                      policy=checkpoint_policy(bench, args.checkpoint_every,
                                               args.checkpoint_minutes))


def _show(rows: list[list[Any]]) -> None:
    from suite.results import RUN_ROW_HEADERS

    print(tabulate(rows, RUN_ROW_HEADERS, tablefmt="github"))


def _refuse_ignored(args: argparse.Namespace) -> None:
    """Options that would be accepted and then ignored: one line naming them."""
    slurm = args.executor == "slurm"
    pairs = [("--jobs", args.jobs is not None and slurm, "--executor slurm (one task per run)")]
    given = {"--" + k.replace("_", "-"): v for k, v in vars(args).items()
             if k == "wait" or k.startswith("slurm_")}
    pairs += [(f, v, "--executor local") for f, v in given.items() if not slurm]
    pairs += [("--tuning", args.tuning is not None and args.untuned, "--untuned")]
    for flag, given, beside in pairs:
        if given:
            raise SpecError("(command line)", flag, f"means nothing with {beside}",
                            "leave it out" if flag != "--tuning" else "one of them")
    if args.tuning is not None and not Path(args.tuning).is_dir():
        raise SpecError("(command line)", "--tuning", f"{args.tuning}: no such folder",
                        "a tuning root such as results/tuning (tune --out)")


def _code_loaded() -> None:
    """Note the commit of the code this process loaded, before any run starts (provenance)."""
    from suite.run.provenance import git_state

    git_state()


def cmd_run(args: argparse.Namespace) -> int:
    _refuse_ignored(args)
    _code_loaded()
    bench = _benchmark(args)
    root = Path(args.tuning) if args.tuning is not None else tuning_record.TUNING_ROOT
    untuned = args.untuned or args.trial
    bench, record = tuning_record.tuned(bench, args.scale, None if untuned else root)
    if args.tuning is not None and not untuned and record["status"] == "untuned":
        # asked for by name: a folder without the record is a mistake, never an untuned run
        raise SpecError("(command line)", "--tuning", f"{args.tuning}: {record['why']}", f"a "
                        f"tuning root holding {args.scale}/{bench.name}/tuning.json (tune --out"
                        " DIR), or leave --tuning out")
    scale = bench.scale(args.scale)
    bench, arms, seeds = arms_and_seeds(bench, scale, args, record)
    if record["status"] == "untuned" and bench.tuning and args.scale in bench.tuning.scales:
        print(f"note: untuned: {record['why']}", flush=True)
    if args.dry_run:
        from suite.run.pricing import price  # imports torch models; keep `list` fast

        print(price(bench, scale, arms, args.assume_tflops))
        return 0
    from suite.run.grid import check_data, run_grid

    check_data(bench, scale, bool(args.data))
    if args.executor == "slurm":
        return _run_slurm(args, bench, arms, seeds)
    jobs, args.threads = jobs_and_threads(args, len(arms) * len(seeds))
    if jobs > 1:
        return _run_pool(args, bench, arms, seeds, jobs)
    said = {a: {"status": "trial", "values": protocol.split_name(a)[1]} if args.trial
            else tuning_record.provenance(record, a) for a in arms}
    ok = run_grid(bench, args.scale, arms, seeds, Path(args.out),
                  _options(args, bench, said), _show)
    return 0 if ok else 1


def _run_slurm(args: argparse.Namespace, bench: Benchmark, arms: list[str],
               seeds: list[int]) -> int:
    """The grid as one Slurm job array (suite/run/slurm.py); with --wait, until every task is
    done, then the table of every run."""
    from suite.run import slurm
    from suite.run.pool import grid_jobs, rows_of

    if bad := [o for o in args.slurm_option or [] if "=" not in o.strip("=")]:
        raise SpecError("(command line)", "--slurm-option", f"{bad[0]!r} is not KEY=VALUE",
                        "an sbatch option, e.g. account=proj or qos=high")

    s = slurm.settings(args.slurm_config, {
        "partition": args.slurm_partition, "time": args.slurm_time,
        "gpus_per_task": args.slurm_gpus_per_task, "cpus_per_task": args.slurm_cpus_per_task,
        "array_parallelism": args.slurm_array_parallelism,
        "options": dict(o.split("=", 1) for o in args.slurm_option or [])})
    out = Path(args.out)
    grid = grid_jobs([*args.argv, "--resume"] if "--resume" not in args.argv else args.argv,
                     out, args.scale, bench.name, arms, seeds, 1, args.device,
                     args.threads or s.cpus_per_task)
    jobs = slurm.submit([j.argv for j in grid], out / ".jobs" / "slurm", s, bench.name)
    print(f"submitted {len(jobs)} runs as Slurm array {jobs[0].job_id.split('_')[0]}; watch "
          f"with: python -m suite status {out}", flush=True)
    if not args.wait:
        return 0
    codes = []
    for j in jobs:
        try:
            codes.append(j.result())
        except Exception as e:  # noqa: BLE001 - a task's failure, named; the rest go on
            print(f"{j.job_id}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}",
                  file=sys.stderr)
            codes.append(2)
    _show(rows_of(grid))
    return 0 if all(c == 0 for c in codes) else 1


def jobs_and_threads(args: argparse.Namespace, runs: int) -> tuple[int, int | None]:
    """How many of a command's `runs` train at once, and the CPU threads of each (None: every
    core). `--device cuda`: one job per visible device. CPU with neither --jobs nor --threads
    (nor SUITE_THREADS): the runs fill the cores, one thread each, the fastest setting measured
    on 2 cores (docs/scaling.md), and one whose numbers do not depend on how many cores the
    machine has or how many runs the command asks for (a curve depends on the thread count).
    Otherwise what was asked: --threads T alone trains one run at a time with T threads."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or args.jobs:  # a torchrun rank: one run
        return args.jobs or 1, args.threads
    if args.device == "cuda":
        import torch

        return max(1, torch.cuda.device_count()), args.threads
    if args.device == "cpu" and args.threads is None and not os.environ.get("SUITE_THREADS"):
        return max(1, min(os.cpu_count() or 1, runs)), 1
    return 1, args.threads


def _run_pool(args: argparse.Namespace, bench: Benchmark, arms: list[str], seeds: list[int],
              jobs: int) -> int:
    """The grid as `jobs` processes at a time (suite/run/pool.py); the table of every run."""
    import os

    from suite.run.pool import Pool, grid_jobs, refused, rows_of

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SpecError("(command line)", "--jobs", "under torchrun: each rank is already "
                        "one process of one run", "--jobs 1 under torchrun")
    out = Path(args.out)
    grid = grid_jobs(args.argv, out, args.scale, bench.name, arms, seeds, jobs, args.device,
                     args.threads)
    print(f"grid: {len(grid)} runs as {jobs} jobs at a time; logs in "
          f"{out / '.jobs' / args.scale / bench.name}", flush=True)
    ok = Pool(grid, jobs).run()
    _show(rows_of(grid))
    if why := refused(grid):  # --resume would not mend it: the job's own one line, exit 2
        raise SuiteError(why)
    if not ok:
        from suite.run.resume import resume_command

        print(f"continue the unfinished runs with:\n  {resume_command(args.argv)}",
              file=sys.stderr)
    return 0 if ok else 1


def _trial_pool(args: argparse.Namespace, bench: Benchmark,
                jobs: int) -> Callable[[list[str], list[int]], None]:
    """`tune --jobs N`: trials as `jobs` processes at a time, each a `run --trial` of one
    trial and one pilot seed (its numbers are those of the trial run in this process)."""
    from suite.run.pool import Pool, grid_jobs, refused

    def run_trials(names: list[str], seeds: list[int]) -> None:
        out = Path(args.out)
        # the subcommand, after the global options (kept): not a value such as --benchmarks tune
        i = next(k for k, a in enumerate(args.argv) if a == "tune" and (
            k == 0 or not args.argv[k - 1].startswith("--") or "=" in args.argv[k - 1]))
        argv = [*args.argv[:i], "run", *args.argv[i + 1:], "--out", str(out), "--trial"]
        grid = grid_jobs(argv, out, args.scale, bench.name, names, seeds, jobs, args.device,
                         args.threads)
        print(f"tuning: {len(grid)} trial runs as {jobs} jobs at a time; logs in "
              f"{out / '.jobs' / args.scale / bench.name}", flush=True)
        Pool(grid, jobs).run()
        if why := refused(grid):  # a trial folder that is not this trial's run: no record
            raise SuiteError(why)

    return run_trials


def cmd_tune(args: argparse.Namespace) -> int:
    from suite.judge.tuning import chosen_text
    from suite.run.grid import check_data
    from suite.run.tune import tune

    _code_loaded()
    bench = _benchmark(args)
    check_data(bench, bench.scale(args.scale), bool(args.data))
    t = bench.tuning
    n = len(t.pilot_seeds) * sum(len(t.trials_of(a)) for a in t.spaces) if t else 1
    jobs, args.threads = jobs_and_threads(args, n)
    rec = tune(bench, args.scale, Path(args.out), _options(args, bench, {}), _show,
               _names(args.arms), _trial_pool(args, bench, jobs) if jobs > 1 else None)
    if rec is None:
        return 1
    if not rec:  # --arms: this job's trials are done, the record waits for the other arms'
        return 0
    print("chosen: " + "; ".join(chosen_text(rec, a) for a in rec["chosen"]))
    return 0


def _training_args(r: argparse.ArgumentParser) -> None:
    """What every training command takes: where it runs, how, and how it goes on after a stop."""
    r.add_argument("benchmark")
    r.add_argument("--scale", default="tiny", choices=SCALES)
    r.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    r.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads of each run (default: 1, as many runs at once as cores; "
                   "--threads alone: one run at a time)")
    r.add_argument("--data", help="your own data: a text file, folder or glob; token shards "
                   "(.npy, .bin, a folder or glob of them: see `tokenize`); or an image folder "
                   "with one subfolder per class")
    r.add_argument("--accum", type=at_least(1), default=1,
                   help="gradient accumulation: micro-batches "
                   "per step and process (the global batch stays the definition's)")
    r.add_argument("--compile", action="store_true", help="torch.compile the training model")
    r.add_argument("--track", choices=("tensorboard", "wandb", "mlflow"), help="also log every "
                   "evaluation and the manifest to this tracker (an optional extra: "
                   "multilevel-suite[track]; W&B offline unless WANDB_MODE)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--jobs", type=at_least(1, high=256), default=None,
                   help="runs at once, each its own process (CPU default: one per core, one "
                   "thread each; --jobs N: the cores split between them; CUDA: one device "
                   "each, default one job per visible device)")
    r.add_argument("--resume", action="store_true", help="go on from each run's newest "
                   "checkpoint; completed runs are kept, runs never started start; a "
                   "checkpoint or completed run of another definition or settings is refused")
    r.add_argument("--checkpoint-every", type=at_least(0), metavar="STEPS",
                   help="write the run state "
                   "every STEPS training steps (default: the definition's [checkpoint])")
    r.add_argument("--checkpoint-minutes", type=at_least(0, float), metavar="M",
                   help="... or every M "
                   "minutes of wall time (default 30; SIGTERM, SIGUSR1 and SIGINT always write "
                   "it and stop the run as preempted)")


def _slurm_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: this machine (--jobs); slurm: one job array through submitit, "
                   "each task one run, requeued and resumed after a preemption or time-out")
    r.add_argument("--wait", action="store_true", help="with --executor slurm: wait for every "
                   "task, then print the table")
    r.add_argument("--slurm-config", metavar="FILE", help="a TOML file whose [slurm] table "
                   "holds partition, time, gpus_per_task, cpus_per_task, array_parallelism, "
                   "options; each --slurm-* option overrides its key")
    r.add_argument("--slurm-partition")
    r.add_argument("--slurm-time", type=at_least(1), metavar="MIN", help="minutes per task")
    r.add_argument("--slurm-gpus-per-task", type=at_least(0))
    r.add_argument("--slurm-cpus-per-task", type=at_least(1))
    r.add_argument("--slurm-array-parallelism", type=at_least(1))
    r.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                   help="an extra sbatch option (repeatable), e.g. account=proj")


def add_parsers(sub: Any) -> None:
    """The `run` and `tune` subcommands."""
    r = sub.add_parser("run", help="train arms of one benchmark")
    _training_args(r)
    r.add_argument("--arms", help="comma-separated arm names (default: all), or variants of "
                   "them: vcycle@alpha=0.5, baseline@budget=0.7")
    r.add_argument("--sweep", metavar="NAME", help="the arms of the definition's "
                   "[sweeps.NAME] (seeds: the sweep's, unless --seeds)")
    r.add_argument("--matched", action="store_true", help="the matched-budget baselines "
                   "(baseline@budget=f) that the verdicts of the runs in --out need, on 5 seeds "
                   "(docs/tuning.md)")
    r.add_argument("--seeds", type=at_least(1, high=10_000), default=None,
                   help="how many seeds (default: the "
                   "scale's `seeds`, from the power analysis at tiny; else 1)")
    r.add_argument("--first-seed", type=at_least(0, high=2**31), default=0)
    r.add_argument("--out", default="runs",
                   help="results root (default: runs/; committed references live in results/)")
    _slurm_args(r)
    r.add_argument("--tuning", default=None, metavar="DIR",
                   help="train each arm with the values chosen in DIR/<scale>/<benchmark>/"
                   "tuning.json (default: the committed results/tuning)")
    r.add_argument("--untuned", action="store_true", help="train the definition's own values")
    # a job of `tune --jobs`: one trial (a variant) on one pilot seed, recorded as a trial
    r.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--dry-run", action="store_true", help="price the plan, train nothing")
    r.add_argument("--assume-tflops", type=at_least(0, float), metavar="T",
                   help="with --dry-run: also the minutes each arm takes at T TFLOP/s achieved")
    r.set_defaults(fn=cmd_run)
    t = sub.add_parser("tune", help="the definition's [tuning] protocol: every arm's trials on "
                       "the pilot seeds, then tuning.json and tuning.md (docs/tuning.md)")
    _training_args(t)
    t.add_argument("--arms", help="only these arms' trials (jobs side by side; then tune "
                   "without --arms and with --resume writes the record)")
    t.add_argument("--out", default=str(tuning_record.TUNING_ROOT), help="results root of the "
                   "trials and the tuning record (default: results/tuning, what `run` reads)")
    t.set_defaults(fn=cmd_tune)
