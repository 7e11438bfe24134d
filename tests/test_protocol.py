"""The fair-comparison protocol: [tuning] (equal trials, pilot seeds, one rule, the edge step),
variants (`vcycle@alpha=0.5`, `baseline@budget=0.7`), [sweeps], and `tune` end to end."""

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from suite import protocol, registry, spec
from suite.cli import main
from suite.judge import tuning as judged
from suite.methods import plan
from suite.results import Run, read_run
from suite.run.provenance import shown_path
from suite.spec import SpecError

FILE = "mini.toml"
LRS = [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3]


def tuned_doc(definition, **tuning):
    """The minimal definition with a vcycle arm, an ablation of it and a [tuning] table."""
    definition["scales"]["smoke"]["model"] = {"hidden": 16, "layers": 2, "heads": 2}
    definition["arms"] |= {"vc": {"method": "vcycle", "alpha": 0.25},
                           "vc-abl": {"method": "vcycle", "alpha": 0.25, "e_small": 0.4}}
    definition["tuning"] = {"scales": ["smoke"], "trials": 2, "pilot_seeds": [1000, 1001],
                            "arms": {"baseline": {"lr": [1e-3, 2e-3]},
                                     "vc": {"lr": [1e-3, 2e-3], "alpha": [0.25, 0.5, 1.0]},
                                     "vc-abl": {"inherit": "vc"}}} | tuning
    return definition


# ---------------------------------------------------------------- trials


def test_a_grid_of_exactly_the_trials_is_the_whole_grid():
    pts = protocol.trial_points({"lr": (1, 2), "alpha": (3, 4)}, 4)
    assert pts == [{"lr": 1, "alpha": 3}, {"lr": 1, "alpha": 4}, {"lr": 2, "alpha": 3},
                   {"lr": 2, "alpha": 4}]


def test_every_arm_with_as_many_trials_as_lrs_tries_every_lr():
    space = {"lr": tuple(LRS), "alpha": (0.25, 0.5, 0.75, 1.0), "e_small": (0.25, 0.5)}
    pts = protocol.trial_points(space, 5)
    assert [p["lr"] for p in pts] == LRS  # the first knob, in list order
    assert len({tuple(p.values()) for p in pts}) == 5  # distinct
    assert {p["alpha"] for p in pts} >= {0.25, 0.5, 1.0}  # spread, not piled on one value
    assert {p["e_small"] for p in pts} == {0.25, 0.5}
    assert pts == protocol.trial_points(space, 5)  # no seed: the same trials every time


def test_repeated_latin_cells_are_replaced_by_unused_ones():
    pts = protocol.trial_points({"a": (1, 2), "b": (1, 2)}, 3)
    assert len({tuple(p.values()) for p in pts}) == 3


def test_a_space_smaller_than_the_trials_is_refused(definition):
    doc = tuned_doc(definition, trials=3)
    with pytest.raises(SpecError, match=re.escape(
            "mini.toml: tuning.arms.baseline: a grid of 2 point(s) cannot hold 3 distinct "
            "trials; allowed: more values, or fewer tuning.trials")):
        spec.parse(doc, FILE)


def test_every_arm_is_tuned_or_inherits(definition):
    doc = tuned_doc(definition)
    del doc["tuning"]["arms"]["vc-abl"]
    with pytest.raises(SpecError, match=r"^mini.toml: tuning.arms.vc-abl: missing: every arm is "
                       "tuned under the same budget"):
        spec.parse(doc, FILE)


def test_pilot_seeds_may_not_be_reported_seeds(definition):
    doc = tuned_doc(definition, pilot_seeds=[0, 1000])
    with pytest.raises(SpecError, match=re.escape(
            "mini.toml: tuning.pilot_seeds: [0] are reported seeds at scale smoke (0..0)")):
        spec.parse(doc, FILE)
    doc["tuning"]["pilot_seeds"] = [1000]
    with pytest.raises(SpecError, match="at least 2 distinct seeds"):
        spec.parse(doc, FILE)
    for bad in ([-1, -2], [1000.0, 1001], "1000"):  # the message names what is wrong
        doc["tuning"]["pilot_seeds"] = bad
        with pytest.raises(SpecError, match=re.escape(
                f"tuning.pilot_seeds: must be a list of integers >= 0, got {bad!r}")):
            spec.parse(doc, FILE)


def test_inherit_names_a_tuned_arm(definition):
    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["vc-abl"] = {"inherit": "baseline2"}
    with pytest.raises(SpecError, match=r"tuning.arms.vc-abl.inherit: 'baseline2' is not a "
                       "tuned arm; allowed: baseline, vc$"):
        spec.parse(doc, FILE)
    doc["tuning"]["arms"]["vc-abl"] = {"inherit": "baseline"}  # another method's knobs
    with pytest.raises(SpecError, match=r"tuning.arms.vc-abl.inherit: 'baseline' trains method "
                       "'baseline', 'vc-abl' trains 'vcycle'; allowed: vc$"):
        spec.parse(doc, FILE)
    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["baseline"] = {"inherit": "vc"}
    with pytest.raises(SpecError, match=r"^mini.toml: tuning.arms.baseline.inherit: 'vc' trains "
                       "method 'vcycle', 'baseline' trains 'baseline'; allowed: none: a tuned "
                       "arm of the same method$"):
        spec.parse(doc, FILE)


def test_a_knob_the_method_does_not_have_fails_at_load(definition):
    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["vc"] = {"lr": [1e-3, 2e-3], "alpah": [0.5, 1.0]}
    with pytest.raises(SpecError, match=r"tuning.arms.vc.alpah: not a knob of arm 'vc' "
                       r"\(method vcycle\); allowed: .*alpha"):
        registry.validate(spec.parse(doc, FILE))
    doc["tuning"]["arms"]["vc"] = {"lr": [1e-3, 2e-3], "alpha": [0.5, 7.0]}
    with pytest.raises(SpecError, match=r"tuning.arms.vc: the point .*'alpha': 7.0.* does not "
                       "plan at scale smoke"):
        registry.validate(spec.parse(doc, FILE))


def test_the_edge_step_is_by_ratio_for_lr_and_by_difference_otherwise():
    space = {"lr": tuple(LRS), "alpha": (0.25, 0.5, 0.75)}
    assert protocol.edge_steps(space, {"lr": 4e-3, "alpha": 0.5}) == [("lr", 8e-3)]
    assert protocol.edge_steps(space, {"lr": 2.5e-4, "alpha": 0.75}) == [
        ("lr", 1.25e-4), ("alpha", 1.0)]
    assert protocol.edge_steps(space, {"lr": 1e-3, "alpha": 0.5}) == []


def test_a_list_that_cannot_be_extended_has_no_step_beyond_its_edge():
    """A category has no next value, nor has a list of one value: `edges` says so (EDGE_RULE),
    and `edge_steps` takes no step there."""
    space = {"decay": ("linear", "cosine", "constant"), "warmup": (0.1,), "lr": (1e-3, 2e-3)}
    chosen = {"decay": "linear", "warmup": 0.1, "lr": 2e-3}
    assert protocol.edges(space, chosen) == [("decay", None, "its list is not numeric"),
                                             ("warmup", None, "its list has one value"),
                                             ("lr", 4e-3, "")]
    assert protocol.edge_steps(space, chosen) == [("lr", 4e-3)]
    assert protocol.edges(space, chosen | {"decay": "cosine"})[0][0] == "warmup"  # inside


def test_tuning_md_says_a_categorical_edge_has_no_step_beyond(definition):
    """tuning.md's edge list names a chosen value on the edge of a categorical list and says
    no step beyond it exists, in the words of a step the method does not allow."""
    from suite.run import tune

    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["baseline"] = {"decay": ["linear", "cosine"]}
    doc["tuning"]["arms"]["vc"] = {"lr": [1e-3, 2e-3], "alpha": [0.5, 0.75, 0.0]}
    bench = registry.validate(spec.parse(doc, FILE))
    trials = {a: tune._trials(a, bench.tuning.trials_of(a)) for a in ("baseline", "vc")}
    for ts in trials.values():
        for t, loss in zip(ts, [2.0, 3.0], strict=True):
            t.runs = _trial([loss, loss]).runs
    extra, edges = tune._edge_trials(bench, trials, "smoke")
    assert edges["baseline"] == ["decay=linear is on the edge; no step beyond it exists (its "
                                 "list is not numeric)"] and "baseline" not in extra
    assert edges["vc"][-1] == ("alpha=0.0 is on the edge; one step beyond (-0.5) is not allowed "
                               "(arms.vc@lr=0.001,alpha=-0.5.alpha: -0.5 is not allowed; allowed: "
                               "a number in [0, 1] (interpolation weight of the de-coalesced "
                               "model))")  # the same words, one code path
    rec = judged.record(bench.tuning, "mini", "d", "smoke", None, trials,
                        {a: "; ".join(e) for a, e in edges.items()})
    md = judged.render(rec, trials).splitlines()
    assert "- baseline: decay=linear is on the edge; no step beyond it exists (its list is not "\
        "numeric)" in md


def test_tuning_md_counts_each_arms_trials_with_and_without_its_edge_steps():
    """docs/tuning.md: tuning.md counts each arm's trials with and without the edge steps."""
    def trials(n, steps):
        return [_trial([3.0 - i / 10] * 2) for i in range(n)] + [
            dataclasses.replace(_trial([3.0, 3.0]), extension=True) for _ in range(steps)]

    ts = {"baseline": trials(2, 1), "vcycle": trials(2, 2), "gstack": trials(2, 0)}
    md = judged.render({"benchmark": "b", "scale": "s", "commit": None, "definition": "d",
                        "trials_per_arm": 2, "pilot_seeds": [1000, 1001], "inherit": {},
                        "chosen": {}, "edges": {}}, ts).splitlines()
    assert ("Trials per arm (declared 2 each): baseline 2 + 1 edge step = 3, vcycle 2 + 2 edge "
            "steps = 4, gstack 2 + 0 edge steps = 2; pilot seeds [1000, 1001], never "
            "reported.") in md


def _trial(losses, statuses=None, start=None):
    """A made-up trial: one run per final loss; `start`: each run's start held-out loss."""
    runs = []
    for i, loss in enumerate(losses):
        status = (statuses or ["completed"] * len(losses))[i]
        summary = {"status": status, "final_heldout_loss": loss} | (
            {} if start is None else {"start_heldout_loss": start})
        runs.append(Run(path=None, manifest={}, summary=summary,
                        curve=[{"step": 1, "heldout_loss": loss, "train_loss": loss}]))
    return judged.Trial("a", "a@x=1", {"x": 1}, runs)


def test_the_rule_picks_the_lowest_mean_and_never_a_diverged_trial():
    good, better = _trial([3.0, 3.2]), _trial([2.9, 3.1])
    diverged = _trial([1.0, math.nan])  # the lowest number, but not a result
    preempted = _trial([1.0, 1.0], ["completed", "preempted"])
    assert judged.select([good, diverged, better, preempted]) is better
    tie = _trial([3.0, 3.2])
    assert judged.select([good, tie]) is good  # a tie goes to the trial listed first
    assert judged.select([diverged, preempted]) is None
    assert diverged.status == "diverged" and preempted.status == "preempted"


def test_the_rule_never_chooses_a_trial_that_did_not_train():
    """A run that completed with finite losses far above its start (ln 256 = 5.55) blew up
    without a NaN: it is no result, and a trial with one ranks last like a diverged one."""
    start = math.log(256)
    blown = _trial([107.0, 450.0], start=start)  # completed, finite, never marked diverged
    half = _trial([1.0, 9.0], start=start)  # one pilot seed trained, the other did not
    flat = _trial([start, start], start=start)  # not below its start: did not train either
    worse = _trial([200.0, 300.0], start=start)
    assert judged.select([blown, worse]) is None
    assert judged.select([half, flat, blown]) is None
    good = _trial([3.0, 3.2], start=start)
    assert judged.select([blown, half, good, flat]) is good
    assert blown.status == "did not train: final loss above start"
    assert flat.status == "did not train: final loss equal to start"
    assert good.status == "completed"
    rows = judged.render({"benchmark": "b", "scale": "s", "commit": None, "definition": "d",
                          "trials_per_arm": 2, "pilot_seeds": [1000, 1001], "inherit": {},
                          "chosen": {"a": good.values}, "edges": {}}, {"a": [blown, good]})
    assert "| did not train: final loss above start |" in rows
    assert "a final loss not below that run's start held-out loss" in protocol.RULE


def test_no_committed_tuning_trial_failed_to_train():
    """The rule's "did not train" clause changes no committed decision: every committed
    trial's pilot runs ended below their start, and the rule still makes each recorded choice."""
    root = Path(__file__).resolve().parents[1]
    records = sorted(root.glob("results/tuning/*/*/tuning.json"))
    assert records, "no committed tuning record"
    for f in records:
        rec = json.loads(f.read_text())
        for arm, names in rec["trials"].items():
            trials = [judged.Trial(arm, n, protocol.split_name(n)[1],
                                   [read_run(f.parent / n / f"seed-{s}")
                                    for s in rec["pilot_seeds"]]) for n in names]
            for t in trials:
                for r in t.runs:
                    s = r.summary
                    assert s["final_heldout_loss"] < s["start_heldout_loss"], r.path
                assert t.usable, (f, t.name, t.status)
            best = judged.select(trials)
            assert best is not None and best.values == rec["chosen"][arm], (f, arm)


# ---------------------------------------------------------------- variants and budget


def test_variant_names_round_trip():
    name = protocol.variant_name("vcycle", {"alpha": 0.5, "lr": 2.5e-4, "first_stage": "warmup"})
    assert name == "vcycle@alpha=0.5,lr=0.00025,first_stage=warmup"
    assert protocol.split_name(name) == ("vcycle", {"alpha": 0.5, "lr": 2.5e-4,
                                                    "first_stage": "warmup"})
    with pytest.raises(ValueError, match="'alpha' is not key=value"):
        protocol.split_name("vcycle@alpha")


def test_a_variant_takes_train_keys_to_its_train_table(builtin_benchmarks):
    gpt = builtin_benchmarks["gpt"]
    arm = protocol.resolve_arm(gpt, "vcycle@alpha=0.5,lr=0.002")
    assert arm.options["alpha"] == 0.5 and arm.train == {"lr": 0.002}
    assert arm.optim(gpt.scale("tiny")).lr == 0.002
    with pytest.raises(SpecError, match=r"arms.vcycle@lr=-1.lr: must be > 0.0, got -1"):
        protocol.resolve_arm(gpt, "vcycle@lr=-1")
    with pytest.raises(SpecError, match=r"arms.nope@x=1: no such arm; allowed: baseline, "):
        protocol.resolve_arm(gpt, "nope@x=1")


@pytest.mark.parametrize("arm", ["baseline", "vcycle", "gstack", "ode-multilevel"])
def test_a_budget_fraction_makes_the_whole_plan_for_that_many_steps(builtin_benchmarks, arm):
    from suite.families import FAMILIES

    gpt, fam = builtin_benchmarks["gpt"], FAMILIES["gpt2"]
    scale = gpt.scale("tiny")

    def cost(size):  # FLOPs of one step grow with width and depth, as the meter's do
        return size["hidden"] ** 2 * size["layers"]

    full = plan(gpt.arms[arm], scale, cost, fam)
    half = plan(protocol.resolve_arm(gpt, f"{arm}@budget=0.5"), scale, cost, fam)

    def spent(p):
        return sum(cost(s.model) * s.steps for s in p.steps if hasattr(s, "optim"))

    assert half.options["budget"] == 0.5 and "budget" not in full.options
    assert spent(half) == pytest.approx(spent(full) / 2, rel=0.01)
    assert [type(s).__name__ for s in half.steps] == [type(s).__name__ for s in full.steps]


def test_a_sweep_value_the_arm_already_runs_is_the_arm_itself(builtin_benchmarks):
    gpt = builtin_benchmarks["gpt"]
    sweep = gpt.sweeps["alpha"]
    assert (sweep.arm, sweep.key, sweep.scales) == ("vcycle", "alpha", ("tiny",))
    assert protocol.sweep_arms(gpt, sweep) == [
        (0.25, "vcycle"), (0.5, "vcycle@alpha=0.5"), (0.75, "vcycle@alpha=0.75"),
        (1.0, "vcycle@alpha=1.0")]


def test_a_value_the_arm_already_runs_is_the_arm_itself_whatever_says_it(builtin_benchmarks):
    """Found by a new user: budget = [0.5, 0.7, 1.0] (the docs' own ladder) trained a
    vcycle@budget=1.0 identical to vcycle; so did vcycle@note=hi (a note changes no step).
    protocol.runs_as is the one rule of sweeps and --arms: declared options, the method's
    defaults (budget 1.0, vcycle's e_small 0.5), the scale's [train] values."""
    gpt = builtin_benchmarks["gpt"]
    tiny = gpt.scale("tiny")
    ladder = protocol.Sweep("budget", "vcycle", "budget", (0.5, 0.7, 1.0), 5, ("tiny",))
    assert protocol.sweep_arms(gpt, ladder, "tiny") == [
        (0.5, "vcycle@budget=0.5"), (0.7, "vcycle@budget=0.7"), (1.0, "vcycle")]
    for name in ("vcycle@budget=1.0", "vcycle@budget=1", "vcycle@note=hi",
                 "vcycle@e_small=0.5", "vcycle@alpha=0.25,budget=1.0",
                 f"vcycle@lr={tiny.train.lr!r}"):
        assert protocol.runs_as(gpt, name, tiny) == "vcycle", name
    for name in ("vcycle@budget=0.5", "vcycle@alpha=0.5,note=hi", "vcycle@e_small=0.25",
                 "vcycle@lr=0.002", "baseline@budget=0.8", "nope@budget=1.0", "vcycle"):
        assert protocol.runs_as(gpt, name, tiny) == name, name
    assert protocol.runs_as(gpt, "vcycle@lr=0.001") == "vcycle@lr=0.001"  # no scale: unknown


def test_a_sweep_of_the_baseline_is_refused_at_load(definition):
    """docs/tuning.md: the baseline's variants are not swept (its budget variants are the
    matched-budget controls, `run --matched`); such a sweep was accepted."""
    definition["arms"]["vc"] = {"method": "vcycle", "alpha": 0.25}
    definition["sweeps"] = {"x": {"arm": "baseline", "budget": [0.5, 0.8]}}
    with pytest.raises(SpecError) as e:
        spec.parse(definition, FILE)
    assert str(e.value) == (
        "mini.toml: sweeps.x.arm: the baseline is not swept: its budget variants "
        "(baseline@budget=f) are the matched-budget controls, made by run --matched; any other "
        "variant runs by name (--arms); allowed: vc")
    definition["sweeps"] = {"x": {"arm": "vc", "budget": [0.5, 1.0]}}
    assert spec.parse(definition, FILE).sweeps["x"].arm == "vc"


def test_a_variant_of_what_the_arm_runs_trains_no_second_folder(tmp_path, mini_toml, capsys):
    """run --arms vc@budget=1.0 trained vc@budget=1.0/, a copy of vc/; now it is vc's run, and
    asking for both is asking for one arm twice."""
    path = tmp_path / "mini.toml"
    path.write_text(mini_toml().replace("hidden = 16, layers = 1", "hidden = 16, layers = 2")
                    + '\n[arms.vc]\nmethod = "vcycle"\nalpha = 0.25\n')
    out = tmp_path / "runs"
    base = ["--benchmarks", str(path), "run", "mini", "--scale", "smoke", "--threads", "1",
            "--no-progress", "--seeds", "1", "--out", str(out)]
    assert main([*base, "--arms", "vc,vc@budget=1.0"]) == 2
    assert "(command line): --arms: vc asked for twice" in capsys.readouterr().err
    assert main([*base, "--arms", "vc@budget=1.0,vc@note=hi"]) == 2
    assert main([*base, "--arms", "vc@budget=1.0"]) == 0
    assert "note: vc@budget=1.0 runs as vc: its values are what vc already runs" \
        in capsys.readouterr().out
    assert sorted(p.name for p in (out / "smoke" / "mini").iterdir()) == ["vc"]


def test_a_sweep_sweeps_exactly_one_knob(definition):
    definition["arms"]["vc"] = {"method": "vcycle", "alpha": 0.25}
    definition["sweeps"] = {"x": {"arm": "vc", "lr": [1e-3], "weight_decay": [0.1]}}
    with pytest.raises(SpecError, match=r"sweeps.x: sweeps exactly one knob, got \['lr', "
                       "'weight_decay'\\]"):
        spec.parse(definition, FILE)


def test_builtin_tuning_declares_equal_trials_and_a_wide_baseline_grid(builtin_benchmarks):
    tuned = [b for b in builtin_benchmarks.values() if b.tuning]
    assert tuned, "no built-in definition declares [tuning]"
    for b in tuned:
        lrs = sorted(b.tuning.spaces["baseline"]["lr"])
        assert lrs[-1] / lrs[0] >= 8, b.name  # at least 8x around the definition's value
        assert all(y / x == pytest.approx(2) for x, y in zip(lrs, lrs[1:], strict=False)), \
            b.name
        for s in b.tuning.scales:
            assert lrs[0] < b.scale(s).train.lr < lrs[-1], b.name
        for arm in b.tuning.spaces:  # the same number of trials per arm, by construction
            assert len(b.tuning.trials_of(arm)) == b.tuning.trials


def test_a_committed_tuning_record_names_its_definition_inside_the_repository(tmp_path):
    """A record made in one clone names the same file in every other: never /work/... ."""
    root = Path(__file__).resolve().parents[1]
    records = sorted(root.glob("results/tuning/*/*/tuning.json"))
    assert records, "no committed tuning record"
    for f in records:
        rec = json.loads(f.read_text())
        assert rec["definition"] == f"suite/definitions/{rec['benchmark']}.toml", f
        assert f"table: {rec['definition']}." in (f.parent / "tuning.md").read_text(), f
    assert shown_path(root / "suite/definitions/gpt.toml") == "suite/definitions/gpt.toml"
    assert shown_path(tmp_path / "mine.toml") == str(tmp_path / "mine.toml")


# ---------------------------------------------------------------- tune, then run tuned


TUNED_TOML = """
[arms.vc]
method = "vcycle"
alpha = 0.25

[arms.vc-abl]
method = "vcycle"
alpha = 0.75
e_small = 0.4

[tuning]
scales = ["smoke"]
trials = 2
pilot_seeds = [1000, 1001]
arms.baseline = { lr = [1e-3, 2e-3] }
arms.vc = { lr = [1e-3, 2e-3], alpha = [0.25, 0.5, 1.0] }
arms.vc-abl = { inherit = "vc" }
"""


@pytest.fixture
def tuned_toml(tmp_path, mini_toml):
    """tuned_doc as a file: the minimal definition, 2 blocks, a vcycle arm and its ablation."""
    path = tmp_path / "mini.toml"
    text = mini_toml().replace("hidden = 16, layers = 1", "hidden = 16, layers = 2")
    path.write_text(text + TUNED_TOML)
    return path


def test_tune_then_run_trains_the_chosen_values(tuned_toml, tmp_path, capsys):
    out = tmp_path / "tuning"
    base = ["--benchmarks", str(tuned_toml)]
    args = ["mini", "--scale", "smoke", "--threads", "1", "--no-progress"]
    capsys.readouterr()
    assert main([*base, "tune", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    rec = json.loads((out / "smoke" / "mini" / "tuning.json").read_text())
    assert set(rec["chosen"]) == {"baseline", "vc", "vc-abl"}
    assert rec["chosen"]["vc-abl"] == rec["chosen"]["vc"]  # inherited
    assert rec["pilot_seeds"] == [1000, 1001] and rec["trials_per_arm"] == 2
    trials = rec["trials"]
    assert len(trials["baseline"]) >= 2 and len(trials["vc"]) >= 2
    md = (out / "smoke" / "mini" / "tuning.md").read_text()
    assert md.count("| chosen |") == 2 and "pilot seeds [1000, 1001], never reported" in md
    assert rec["kept"] == {"vc-abl": {"alpha": 0.75}}  # a tuned knob the ablation sets itself
    assert re.search(r"vc-abl: lr=[0-9.]+, alpha=0\.75 \(inherited from vc; its own "
                     r"alpha=0\.75 kept\)", md), md
    # the command's last line says what tuning.md says, the ablation's own knob included
    assert "Chosen: " + printed.removeprefix("chosen: ") + "." in md.splitlines(), printed
    man = json.loads((out / "smoke" / "mini" / trials["vc"][0] / "seed-1000" /
                      "manifest.json").read_text())
    assert man["tuning"]["status"] == "trial"
    runs = tmp_path / "runs"
    assert main([*base, "run", *args, "--tuning", str(out), "--out", str(runs)]) == 0
    man = json.loads((runs / "smoke" / "mini" / "vc" / "seed-0" / "manifest.json").read_text())
    assert man["tuning"]["status"] == "tuned" and man["tuning"]["values"] == rec["chosen"]["vc"]
    arm = man["definition"]["arm"]
    assert arm["train"]["lr"] == rec["chosen"]["vc"]["lr"]
    assert arm["options"]["alpha"] == rec["chosen"]["vc"]["alpha"]
    abl = json.loads((runs / "smoke" / "mini" / "vc-abl" / "seed-0" / "manifest.json").read_text())
    assert abl["definition"]["arm"]["options"]["e_small"] == 0.4  # what makes it the ablation
    assert abl["definition"]["arm"]["options"]["alpha"] == 0.75
    assert abl["tuning"]["values"] == {"lr": rec["chosen"]["vc"]["lr"]}
    capsys.readouterr()
    assert main([*base, "run", *args, "--untuned", "--matched", "--out", str(runs),
                 "--dry-run"]) == 2  # matched baselines untuned against tuned arms: refused
    assert re.search(r"--matched: the baseline's runs in \S+ trained tuned \{'lr': [0-9.e-]+\}; "
                     r"its matched baselines would train untuned; allowed: the same --tuning",
                     capsys.readouterr().err)  # no stray space before the ';'
    assert main([*base, "run", *args, "--tuning", str(out), "--out", str(runs),
                 "--first-seed", "1000"]) == 2
    assert "seeds [1000] are the tuning's pilot seeds" in capsys.readouterr().err
    assert main([*base, "run", *args, "--untuned", "--out", str(tmp_path / "u"),
                 "--arms", "vc"]) == 0
    man = json.loads((tmp_path / "u/smoke/mini/vc/seed-0/manifest.json").read_text())
    assert man["tuning"]["status"] == "untuned" and "--untuned" in man["tuning"]["why"]


def test_tune_refuses_an_arm_none_of_whose_trials_trained(tmp_path, mini_toml, capsys):
    """lr 10 and 20 blow the minimal model up without a NaN (final losses in the thousands, the
    start about 5.5): every run completes, none trains. tune chooses nothing: one line naming
    the arm and its trials, exit 2, and an earlier record's choice removed, not kept."""
    path = tmp_path / "mini.toml"
    path.write_text(mini_toml() + '[tuning]\nscales = ["smoke"]\ntrials = 2\n'
                    'pilot_seeds = [1000, 1001]\narms.baseline = { lr = [10.0, 20.0] }\n')
    out = tmp_path / "tuning"
    folder = out / "smoke" / "mini"
    folder.mkdir(parents=True)
    (folder / "tuning.json").write_text('{"chosen": {"baseline": {"lr": 8.0}}}')
    capsys.readouterr()
    assert main(["--benchmarks", str(path), "tune", "mini", "--scale", "smoke", "--threads", "1",
                 "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: mini at smoke: no trial of arm 'baseline' completed and "
                          "trained"), err
    assert "baseline@lr=10.0: did not train: final loss above start" in err
    assert "baseline@lr=20.0: did not train: final loss above start" in err
    assert not (folder / "tuning.json").exists() and not (folder / "tuning.md").exists()
    runs = [read_run(folder / f"baseline@lr={lr}" / f"seed-{s}") for lr in ("10.0", "20.0")
            for s in (1000, 1001)]
    assert all(r.status == "completed" for r in runs)  # blown up, yet never marked diverged
    assert not (folder / "baseline@lr=5.0").exists()  # no edge step from a trial never chosen


def test_tune_jobs_train_the_trials_of_tune_in_one_process(tuned_toml, tmp_path, capsys):
    """Issue 24: `tune --jobs 2` runs each trial on each pilot seed as its own process; every
    trial's curve is the one the trial has in one process, bit for bit, and each is recorded as
    a trial, never as tuned."""
    base = ["--benchmarks", str(tuned_toml), "tune", "mini", "--scale", "smoke", "--threads", "1",
            "--no-progress", "--arms", "baseline"]
    # this job's arm is done (exit 0, as a scheduler should read it); the record waits for the
    # other arms' trials and is not written yet
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    assert not (tmp_path / "one" / "smoke" / "mini" / "tuning.json").exists()
    assert main([*base, "--out", str(tmp_path / "pool"), "--jobs", "2"]) == 0
    out = capsys.readouterr()
    assert "tuning: 4 trial runs as 2 jobs at a time" in out.out
    assert "the trials of --arms baseline are done" in out.err

    def curves(root):
        found = sorted((root / "smoke" / "mini").glob("*/seed-*/curve.jsonl"))
        return {f"{f.parent.parent.name}/{f.parent.name}": [
            {k: v for k, v in json.loads(x).items() if k != "wall_s"}
            for x in f.read_text().splitlines()] for f in found}

    one, pool = curves(tmp_path / "one"), curves(tmp_path / "pool")
    assert len(one) >= 4 and pool == one
    for f in (tmp_path / "pool" / "smoke" / "mini").glob("*/seed-*/manifest.json"):
        man = json.loads(f.read_text())
        arm = f.parent.parent.name
        assert man["tuning"] == {"status": "trial", "values": protocol.split_name(arm)[1]}
        assert man["environment"]["threads"] == 1


def test_tune_resume_refuses_trials_of_another_definition(tuned_toml, tmp_path, capsys):
    """Field fault: `tune --resume` kept completed trial runs trained under another definition
    (steps changed) and ranked them as trials of the new one. Refused in one line (exit 2)
    naming the trial's folder and the key, in one process and with --jobs; trials of the same
    definition are kept, not retrained."""
    out = tmp_path / "t"
    base = ["--benchmarks", str(tuned_toml), "tune", "mini", "--scale", "smoke", "--threads", "1",
            "--no-progress", "--arms", "baseline", "--out", str(out)]
    assert main(base) == 0  # this arm's trials done; the other arms' are left
    done = {f: f.read_text() for f in (out / "smoke" / "mini").glob("*/seed-*/summary.json")}
    assert len(done) >= 4
    assert main([*base, "--resume"]) == 0
    assert {f: f.read_text() for f in done} == done  # kept, none retrained
    tuned_toml.write_text(tuned_toml.read_text().replace("steps = 4", "steps = 6"))
    capsys.readouterr()
    said = (rf"{re.escape(str(out / 'smoke' / 'mini'))}/baseline@lr=[0-9.e-]+/seed-1000: a "
            r"completed run that --resume would keep, but its definition differs at "
            r"'scale\.steps'; to train this one use another --out, or delete the folder")
    assert main([*base, "--resume"]) == 2
    assert re.fullmatch(rf"error: {said} .*\n", capsys.readouterr().err)
    assert main([*base, "--resume", "--jobs", "2"]) == 2
    assert re.fullmatch(rf"error: baseline@lr=[0-9.e-]+ seed 1000: {said} .*",
                        capsys.readouterr().err.splitlines()[-1])
    assert {f: f.read_text() for f in done} == done


def test_a_tuning_record_of_another_table_is_refused(tuned_toml, tmp_path, capsys):
    rec_dir = tmp_path / "tuning" / "smoke" / "mini"
    rec_dir.mkdir(parents=True)
    (rec_dir / "tuning.json").write_text(json.dumps({
        "benchmark": "mini", "scale": "smoke", "trials_per_arm": 2, "pilot_seeds": [7, 8],
        "inherit": {"vc-abl": "vc"}, "space": {}, "chosen": {}}))
    assert main(["--benchmarks", str(tuned_toml), "run", "mini", "--scale", "smoke",
                 "--tuning", str(tmp_path / "tuning"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"tuning.json: pilot_seeds: \[7, 8\] was tuned, the definition .* now "
                     r"declares \[1000, 1001\]; re-run python -m suite tune mini", err), err


def test_an_explicit_tuning_folder_without_the_record_is_refused(tuned_toml, tmp_path, capsys):
    """--tuning named on the command line: a folder without SCALE/BENCH/tuning.json (empty, or
    one level too deep) is a mistake to name, never a silent untuned run."""
    empty = tmp_path / "empty"
    (empty / "smoke" / "mini").mkdir(parents=True)
    for folder in (empty, empty / "smoke" / "mini"):
        assert main(["--benchmarks", str(tuned_toml), "run", "mini", "--scale", "smoke",
                     "--tuning", str(folder), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert f"(command line): --tuning: {folder}: no {folder}/smoke/mini/tuning.json yet" \
            in err and "allowed: a tuning root holding smoke/mini/tuning.json" in err, err


def test_sweep_and_arms_together_are_refused(capsys):
    assert main(["run", "gpt", "--scale", "tiny", "--sweep", "alpha", "--arms", "vcycle",
                 "--dry-run"]) == 2
    assert "--arms: given with --sweep" in capsys.readouterr().err
    for flag in (["--wait"], ["--slurm-time", "5"], ["--tuning", "/nope"]):
        assert main(["run", "gpt", "--scale", "smoke", "--dry-run", *flag]) == 2
        assert f"(command line): {flag[0]}: " in capsys.readouterr().err  # never ignored
    assert main(["run", "gpt", "--scale", "smoke", "--dry-run", "--arms", "baseline,baseline"]) \
        == 2
    assert "--arms: baseline asked for twice" in capsys.readouterr().err
    assert main(["run", "gpt", "--scale", "smoke", "--sweep", "alpha", "--dry-run"]) == 2
    assert "sweeps.alpha: declared at tiny, not at smoke; allowed: at smoke: none declared" \
        in capsys.readouterr().err


def test_a_record_is_checked_before_it_is_trusted(tuned_toml, tmp_path, capsys):
    """Found by a new-user trial: a chosen value no trial tried, an arm missing from it, a
    record of a definition changed since, each was applied (or a traceback)."""
    out = tmp_path / "tuning"
    base = ["--benchmarks", str(tuned_toml)]
    args = ["mini", "--scale", "smoke", "--threads", "1", "--no-progress"]
    assert main([*base, "tune", *args, "--out", str(out)]) == 0
    path = out / "smoke" / "mini" / "tuning.json"
    good = json.loads(path.read_text())
    run = [*base, "run", *args, "--tuning", str(out), "--dry-run"]
    for change, message in [
        (lambda r: r["chosen"]["baseline"].update(lr=0.5),
         r"tuning.json: chosen.baseline: \{'lr': 0.5\} is none of the values its trials tried"),
        (lambda r: r["chosen"].pop("vc-abl"), r"tuning.json: chosen.vc-abl: None is none of"),
        (lambda r: r.update(chosen=[1, 2]), r"tuning.json: chosen: missing or not a table"),
        (lambda r: r.pop("trials"), r"tuning.json: trials: missing or not a table of arm -> "
         r"trial names"),
        (lambda r: r["trials"].update(vc="vc@lr=0.002,alpha=0.25"),
         r"tuning.json: trials.vc: 'vc@lr=0.002,alpha=0.25' is not a list of trial names"),
        (lambda r: r["trials"]["vc"].append("vc@lr"),
         r"tuning.json: trials.vc: 'vc@lr': 'lr' is not key=value"),
        (lambda r: (r["trials"]["vc"].append("vc@lr=0.1,alpha=1.0"),
                    r["chosen"].update(vc={"lr": 0.1, "alpha": 1.0})),
         r"tuning.json: trials.vc: 'vc@lr=0.1,alpha=1.0' is not a trial of the declared space "
         r"\(lr=0.1\); allowed: lr: \[0.0005, 0.001, 0.002, 0.004\]; alpha: \[0.0, 0.25, 0.5, "
         r"1.0, 1.5\]"),  # the declared values and one edge step beyond each end
        (lambda r: r["chosen"].update(ghost={"lr": 0.001}),
         r"tuning.json: chosen.ghost: not an arm of the definition; allowed: baseline, vc, vc-abl"),
        (lambda r: r["snapshot"]["scale"].update(steps=99),
         r"tuning.json: snapshot.scale.steps: the definition changed since this tuning"),
    ]:
        rec = json.loads(json.dumps(good))
        change(rec)
        path.write_text(json.dumps(rec))
        capsys.readouterr()
        assert main(run) == 2, message
        assert re.search(message, capsys.readouterr().err), message
    path.write_text(json.dumps(good))
    runs = tmp_path / "runs"
    assert main([*base, "run", *args, "--tuning", str(out), "--out", str(runs), "--arms",
                 "vc@alpha=1.0"]) == 0
    man = json.loads((runs / "smoke/mini/vc@alpha=1.0/seed-0/manifest.json").read_text())
    assert man["tuning"]["variant"] == {"alpha": 1.0}
    assert "alpha" not in man["tuning"]["values"]  # the tuned alpha is not what it ran
    assert man["definition"]["arm"]["options"]["alpha"] == 1.0


@pytest.mark.parametrize("arm", ["vcycle@lr=nan", "vcycle@lr=inf", "baseline@warmup=nan"])
def test_a_value_that_is_not_finite_is_refused(capsys, arm):
    assert main(["run", "gpt", "--scale", "smoke", "--arms", arm, "--dry-run"]) == 2
    assert re.search(r"must be a finite number, got (nan|inf)", capsys.readouterr().err)


def test_a_tuning_list_with_nan_is_refused(definition):
    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["baseline"]["lr"] = [float("nan"), 1e-3]
    with pytest.raises(SpecError, match=r"tuning.arms.baseline.lr: must be a non-empty list of "
                       "distinct values, got \\[nan, 0.001\\]"):
        spec.parse(doc, FILE)
    doc["train"]["lr"] = float("inf")
    with pytest.raises(SpecError, match="train.lr: must be a finite number, got inf"):
        spec.parse(doc, FILE)


def test_a_sweep_of_a_train_key_finds_the_definitions_own_value(builtin_benchmarks):
    gpt = builtin_benchmarks["gpt"]
    sweep = protocol.Sweep("lr", "baseline", "lr", (1e-3, 2e-3), 5, ("tiny",))
    assert protocol.sweep_arms(gpt, sweep, "tiny") == [(1e-3, "baseline"),
                                                       (2e-3, "baseline@lr=0.002")]


def test_the_budget_is_never_tuned(definition):
    doc = tuned_doc(definition)
    doc["tuning"]["arms"]["baseline"] = {"budget": [0.5, 1.0]}
    with pytest.raises(SpecError, match=r"tuning.arms.baseline.budget: is what a saving is "
                       "measured in, never tuned"):
        spec.parse(doc, FILE)
