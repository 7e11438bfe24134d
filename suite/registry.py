"""The registry: definition files -> validated Benchmarks, checked against families and methods.

spec.py checks what a definition says; this module checks that it can run: the family exists and
can build every scale's size, the data suits the family, and every arm plans at every scale. All of
it happens before anything trains, and every error names the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from suite import data as D
from suite.families import FAMILIES, Family, Inputs
from suite.methods import MethodError, plan
from suite.resolved import parse_definitions
from suite.spec import Benchmark, Scale, SpecError

USER_SOURCE = "user"  # a scale whose data the user must bring with --data PATH


def inputs_for(family: Family, scale: Scale, data: D.TextData | D.ImageData | None) -> Inputs:
    """The input description a family sizes itself from; `data=None` uses what the built-in
    sources are known to hold (for validation before loading anything)."""
    if family.data_kind == "images":
        if data is None:
            return Inputs(image_size=28, channels=1, num_classes=10)  # both built-in sources
        return Inputs(image_size=data.image_size, channels=data.channels,
                      num_classes=data.num_classes)
    vocab = data.vocab_size if data is not None else (scale.data.vocab_size or D.BYTE_VOCAB)
    if family.task == "masked-lm":
        vocab += 1  # [MASK]
    return Inputs(seq_len=scale.seq_len, vocab_size=vocab)


def validate(b: Benchmark) -> Benchmark:
    if b.family not in FAMILIES:
        raise SpecError(b.path, "family", f"unknown family {b.family!r}", ", ".join(FAMILIES))
    fam = FAMILIES[b.family]
    builtin = D.BUILTIN_TEXT if fam.data_kind == "text" else D.BUILTIN_IMAGES
    other = D.BUILTIN_IMAGES if fam.data_kind == "text" else D.BUILTIN_TEXT
    for name, s in b.scales.items():
        where = f"scales.{name}"
        if s.data.source in other:
            raise SpecError(b.path, s.where("data.source"),
                            f"{s.data.source!r} is not {fam.data_kind} data (family {fam.name})",
                            f"{', '.join(builtin)}, a path, or 'user'")
        if fam.data_kind == "text" and not s.seq_len:
            raise SpecError(b.path, f"{where}.seq_len", f"missing; family {fam.name} reads text")
        if fam.data_kind == "images" and s.seq_len:
            raise SpecError(b.path, f"{where}.seq_len", f"family {fam.name} reads images; "
                            "remove seq_len (the image size comes from the data)")
        inputs = inputs_for(fam, s, None)
        for key, msg in fam.check(s.model, inputs if s.data.source in builtin else Inputs()):
            raise SpecError(b.path, f"{where}.model.{key}", msg)
        if s.eval.every > s.steps:
            raise SpecError(b.path, s.where("eval.every"),
                            f"{s.eval.every} is more than the {s.steps} steps of scale {name}",
                            f"1..{s.steps}")
        if "top1" in s.eval.metrics and fam.task != "classify":
            raise SpecError(b.path, s.where("eval.metrics"),
                            f"top1 needs a classifier, {fam.name} is {fam.task}", "loss")
        for arm in b.arms.values():
            try:
                plan(arm, s, family=fam)
            except MethodError as e:
                raise SpecError(b.path, e.key, f"{e.problem} (scale {name})") from None
        _check_protocol(b, s)
    return b


def _check_protocol(b: Benchmark, s: Scale) -> None:
    """Every point a [tuning] trial or a [sweeps] value asks for at scale `s` is a knob of the
    arm's method (or a [train] key) and plans: a typo fails at load, not after hours of trials.
    Raises SpecError naming tuning.arms.<arm>.<knob> or sweeps.<name>.<knob>."""
    from suite import methods, protocol

    asks = []  # (where, arm, points)
    if b.tuning and s.name in b.tuning.scales:
        asks += [(f"tuning.arms.{a}", a, b.tuning.trials_of(a)) for a in b.tuning.spaces]
    asks += [(f"sweeps.{n}", w.arm, [{w.key: v} for v in w.values])
             for n, w in b.sweeps.items() if s.name in w.scales]
    fam = FAMILIES[b.family]
    for where, arm, points in asks:
        known = set(methods.get(b.arms[arm].method).options) | set(methods.COMMON)
        for key in points[0]:
            if key not in known and key not in protocol.TRAIN_KEYS:
                raise SpecError(b.path, f"{where}.{key}", f"not a knob of arm {arm!r} (method "
                                f"{b.arms[arm].method})", ", ".join(
                                    [*sorted(known), *protocol.TRAIN_KEYS]))
        for point in points:
            try:
                plan(protocol.with_values(b.arms[arm], point, arm, b.path), s, family=fam)
            except (MethodError, SpecError) as e:
                raise SpecError(b.path, where, f"the point {point} does not plan at scale "
                                f"{s.name}: {e.key}: {e.problem}") from None


def load_benchmarks(paths: list[str | Path] | None = None) -> dict[str, Benchmark]:
    """All definitions under `paths` (files or folders; default: the built-in registry), each
    checked that it can run (`validate`)."""
    return {name: validate(b) for name, b in parse_definitions(paths).items()}
