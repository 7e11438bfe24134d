"""`python -m suite run --dry-run`: each arm's Plan priced with the meter before anything trains:
training steps and FLOPs per level, the tokens (images) it would see and the passes over the
data that makes, and, at an assumed achieved throughput, the minutes it would take."""

from __future__ import annotations

from tabulate import tabulate

from suite import data as dataio
from suite import flops
from suite.data import corpus
from suite.families import FAMILIES
from suite.methods import Train, plan
from suite.registry import USER_SOURCE, inputs_for
from suite.results import fmt_flops
from suite.run.context import step_cost
from suite.spec import Benchmark, Scale


def _train_tokens(bench: Benchmark, scale: Scale) -> tuple[int | None, str]:
    """Training tokens (images) the data offers, for passes over it; or None and why they
    cannot be counted here (data the user brings, a corpus not built, a source that fails)."""
    source = scale.data.source
    if source == USER_SOURCE:
        return None, "this scale reads your data: pass --data PATH to count it"
    try:
        if FAMILIES[bench.family].data_kind == "images":
            found = dataio.load_images(source, scale.data.image_size, scale.data.augment)
            return (len(found.train) if hasattr(found, "augment") else len(found.train_y)), ""
        if source == corpus.NAME:
            return corpus.load()[2]["bytes"]["train"], ""
        return len(dataio.load_text(source, scale.data.vocab_size or None).train), ""
    except (dataio.DataError, corpus.CorpusError) as e:
        return None, str(e)


def _figure(x: float) -> str:
    """A count of passes or minutes: one decimal from 1 up, two significant digits below (a
    tenth of a pass is not 0: `.1f` printed 0.0011 passes as 0)."""
    return f"{x:.1f}" if x >= 1 or x == 0 else f"{x:.2g}"


def _share(x: float) -> str:
    """A level's share of the FLOPs, as a percentage that is never 0.0% for a level that ran."""
    return f"{x:.1%}" if x >= 0.001 or x == 0 else f"{100 * x:.2g}%"


def price(bench: Benchmark, scale: Scale, arms: list[str], tflops: float | None) -> str:
    """Each arm's Plan priced with the meter, as a table and its notes: FLOPs per level (the
    FLOP convention of suite/flops.py), data passes, and, given `tflops` (TFLOP/s achieved, an
    assumption), the minutes it would take. Raises SpecError / MethodError as planning does."""
    fam = FAMILIES[bench.family]
    inputs = inputs_for(fam, scale, None)
    cost = step_cost(fam, scale, inputs)
    per_sample = scale.seq_len or 1
    available, why_not = _train_tokens(bench, scale)
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
        row = [a, p.method, p.train_steps, fmt_flops(total),
               "; ".join(f"L{k}: {n} steps, {_share(f / total)}"
                         for k, (n, f) in sorted(per_level.items())),
               f"{seen:.3g}", _figure(seen / available) if available else "-"]
        if tflops:
            row.append(_figure(total / (tflops * 1e12) / 60))
        rows.append(row)
    unit = "tokens" if scale.seq_len else "images"
    headers = ["arm", "method", "train steps", "FLOPs (projected)", "per level",
               f"{unit} seen", "passes over the data"]
    if tflops:
        headers.append(f"minutes at {tflops:g} TFLOP/s")
    out = [tabulate(rows, headers, tablefmt="github"), f"\nFLOP convention: {flops.CONVENTION}"]
    if not available:
        out.append(f"Passes over the data: -, the training {unit} of data.source = "
                   f"{scale.data.source!r} not counted: "
                   f"{why_not or 'its training split is empty'}")
    if tflops:
        out.append(f"Minutes assume {tflops:g} TFLOP/s achieved on the counted FLOPs (an "
                   "assumption, not a measurement); evaluation and transfers are extra.")
    return "\n".join(out)

