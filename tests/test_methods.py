"""Options every method accepts (suite/methods/base.py COMMON): `note`."""

import pytest

from suite.methods import MethodError, plan
from suite.spec import Arm


@pytest.mark.parametrize(("method", "bench"), [("baseline", "gpt"), ("vcycle", "gpt"),
                                               ("ode-multilevel", "ode")])
def test_every_method_records_a_note_and_only_when_set(builtin_benchmarks, method, bench):
    scale = builtin_benchmarks[bench].scale("smoke")
    note = "adaptation: AdamW, not paper 2's SGD"
    with_note = plan(Arm("a", method, {"note": note}), scale)
    without = plan(Arm("a", method, {}), scale)
    assert with_note.options["note"] == note
    assert "note" not in without.options
    assert {k: v for k, v in with_note.options.items() if k != "note"} == without.options
    assert with_note.steps == without.steps  # a note changes nothing that runs


def test_baseline_options_are_empty_without_a_note(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("smoke")
    assert plan(Arm("b", "baseline", {}), scale).options == {}
    assert plan(Arm("b", "baseline", {"note": "x"}), scale).options == {"note": "x"}


@pytest.mark.parametrize("bad", [3, "", "  ", ["a"]])
def test_a_note_must_be_a_non_empty_string(builtin_benchmarks, bad):
    scale = builtin_benchmarks["gpt"].scale("smoke")
    with pytest.raises(MethodError, match=r"arms\.b\.note: .* is not allowed; allowed: a "
                                          "non-empty string"):
        plan(Arm("b", "baseline", {"note": bad}), scale)


def test_unknown_option_lists_note_among_the_allowed(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("smoke")
    with pytest.raises(MethodError, match=r"arms\.b\.alpha: unknown option of method "
                                          r"'baseline'; allowed: none of its own; any method: "
                                          r"note, budget$"):
        plan(Arm("b", "baseline", {"alpha": 0.5}), scale)
    with pytest.raises(MethodError, match=r"arms\.v\.beta: unknown option of method 'vcycle'; "
                                          r"allowed: levels, alpha, .*, optimizer_policy; any "
                                          r"method: note, budget$"):
        plan(Arm("v", "vcycle", {"beta": 0.5}), scale)


def test_the_builtin_arms_carry_their_notes(builtin_benchmarks):
    gpt, ode = builtin_benchmarks["gpt"], builtin_benchmarks["ode"]
    assert gpt.arms["ode-multilevel"].options["note"].startswith("adaptation: AdamW")
    assert gpt.arms["vcycle-preserving"].options["note"].startswith("ablation:")
    assert "note" not in gpt.arms["vcycle"].options  # the paper's arm, as defined
    assert {a: o.options.get("note", "").split(":")[0] for a, o in ode.arms.items()} == {
        "baseline": "", "ode-multilevel": "", "ode-step2": "ablation",
        "ode-delta05": "ablation", "ode-until-scaled": "ablation",
        "ode-shared-averaged": "ablation"}


def test_methods_lists_a_plugins_description_and_a_broken_one_without_failing(monkeypatch):
    from importlib import metadata

    from suite import methods

    eps = {ep.name: ep for ep in (
        metadata.EntryPoint("good", "suite.methods.gstack:METHOD", methods.ENTRY_POINTS),
        metadata.EntryPoint("broken", "no_such_package_x:METHOD", methods.ENTRY_POINTS),
        metadata.EntryPoint("exits", "sys:exit", methods.ENTRY_POINTS),
        metadata.EntryPoint("baseline", "suite.methods.gstack:METHOD", methods.ENTRY_POINTS))}
    monkeypatch.setattr(methods, "_entry_points", lambda: eps)
    listed = methods.available()
    assert listed["good"] == (f"{methods.BUILTIN['gstack'].doc} "
                              "(plug-in: suite.methods.gstack:METHOD)")
    assert listed["broken"] == ("plug-in: no_such_package_x:METHOD; cannot be loaded: "
                                "ModuleNotFoundError: No module named 'no_such_package_x'")
    assert listed["exits"] == "plug-in: sys:exit; cannot be loaded: SystemExit"
    assert listed["baseline"] == (f"{methods.BUILTIN['baseline'].doc} (plug-in suite.methods."
                                  "gstack:METHOD has the same name and is not used)")
    assert methods.get("baseline") is methods.BUILTIN["baseline"]  # what runs, as listed


# A plug-in's plan is checked before anything runs (found by a new-user trial: a plan with no
# steps, 0 steps, a wider level 1 or only coarse stages ran and compared as savings).
def _bad_method(monkeypatch, make):
    from suite import methods
    from suite.methods import Method, Option
    from suite.methods.base import options

    opts = {"at": Option(0.5, "when", lambda v: 0 < v < 1, "(0, 1)")}  # the README's check

    def planfn(arm, scale, family=None, cost=None):
        options(arm, opts, {})
        return make(scale)

    monkeypatch.setitem(methods.BUILTIN, "bad", Method("bad", opts, planfn))


def _train(scale, level=1, steps=10, **model):
    from suite.methods import Train, optim_of

    return Train(level, {**scale.model, **model}, steps, optim_of(scale))


def _raise(exc):
    raise exc


BAD_PLANS = {
    "none": (lambda s: None, "plans NoneType; a method's plan is a Plan with at least one "
                             "Train step"),
    "empty": (lambda s: __import__("suite.methods").methods.Plan("bad", {}, ()),
              "plans no steps; a method's plan is a Plan with at least one Train step"),
    "zero steps": (lambda s: _plan_of(_train(s, steps=0)),
                   "plans Train steps=0 at step 0; allowed: an integer >= 1"),
    "float steps": (lambda s: _plan_of(_train(s, steps=2.5)),
                    "plans Train steps=2.5 at step 0; allowed: an integer >= 1"),
    "wider level 1": (lambda s: _plan_of(_train(s, hidden=64)),
                      "plans level 1 (step 0) with model {'hidden': 64, 'layers': 4, 'heads': "
                      "2}; level 1 is the definition's model {'hidden': 32, 'layers': 4, "
                      "'heads': 2}, the baseline's, or savings compare unlike models"),
    "coarse only": (lambda s: _plan_of(_train(s, level=2, layers=2)),
                    "plans no Train of the arm's own model; at least one Train step is level "
                    "1, not auxiliary"),
    "odd heads": (lambda s: _plan_of(_train(s, level=2, heads=3)),
                  "plans Train model {'hidden': 32, 'layers': 4, 'heads': 3} at step 0: "
                  "heads: hidden=32 is not divisible by heads=3"),
    "unknown operator": (lambda s: _plan_of(_train(s), __import__("suite.methods").methods
                                            .Transfer("nope")),
                         "plans transfer 'nope' (step 1), which no operator implements"),
    "raises": (lambda s: _raise(KeyError("x")), "failed to plan: KeyError: 'x'"),
}


def _plan_of(*steps):
    from suite.methods import Plan

    return Plan("bad", {}, steps)


@pytest.mark.parametrize("case", BAD_PLANS, ids=list(BAD_PLANS))
def test_a_plan_the_meter_cannot_compare_is_refused(builtin_benchmarks, monkeypatch, case):
    from suite.families import FAMILIES

    make, message = BAD_PLANS[case]
    _bad_method(monkeypatch, make)
    gpt = builtin_benchmarks["gpt"]
    with pytest.raises(MethodError) as e:
        plan(Arm("b", "bad", {}), gpt.scale("smoke"), family=FAMILIES["gpt2"])
    assert str(e.value).startswith("arms.b.method: method 'bad' " + message)


def test_an_option_check_that_raises_is_a_value_not_allowed(builtin_benchmarks, monkeypatch):
    _bad_method(monkeypatch, lambda s: _plan_of(_train(s)))
    with pytest.raises(MethodError, match=r"^arms\.b\.at: 'abc' is not allowed; allowed: "
                                          r"\(0, 1\) \(when\)$"):
        plan(Arm("b", "bad", {"at": "abc"}), builtin_benchmarks["gpt"].scale("smoke"))


@pytest.mark.parametrize(("body", "message"), [
    ("1 / 0", "ZeroDivisionError: division by zero"),
    ("def METHOD():\n    raise RuntimeError('boom')", "RuntimeError: boom"),
])
def test_a_plugin_that_fails_to_load_is_one_error(tmp_path, monkeypatch, body, message):
    from suite.methods import get

    (tmp_path / "suite_trial_broken.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MethodError) as e:
        get("suite_trial_broken:METHOD", "arms.x.method")
    assert str(e.value) == ("arms.x.method: method 'suite_trial_broken:METHOD' cannot be "
                            f"loaded: {message}")


@pytest.mark.parametrize(("result", "message"), [
    (None, "operator 'trial' returned NoneType; an operator returns (the model that trains "
           "next, its FLOPs)"),
    ("model", "operator 'trial' returned str; an operator returns (the model that trains next, "
              "its FLOPs)"),
    (-10**15, "operator 'trial' returned FLOPs -1000000000000000; allowed: an integer >= 0"),
    (1.5, "operator 'trial' returned FLOPs 1.5; allowed: an integer >= 0"),
])
def test_an_operator_result_the_meter_cannot_count_is_refused(monkeypatch, result, message):
    from torch import nn

    from suite import operators

    def op(o, model, saved):
        return result if result in (None, "model") else (model, result)

    monkeypatch.setitem(operators.OPERATORS, "trial", operators.Operator("trial", op, False, ""))
    with pytest.raises(operators.OperatorError) as e:
        operators.apply("trial", {}, nn.Linear(2, 2), {})
    assert str(e.value).startswith(message)
    model = nn.Linear(2, 2)
    monkeypatch.setitem(operators.OPERATORS, "trial",
                        operators.Operator("trial", lambda o, m, s: (m, 0), False, ""))
    assert operators.apply("trial", {}, model, {}) == (model, 0)
