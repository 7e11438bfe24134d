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
                                          r"note$"):
        plan(Arm("b", "baseline", {"alpha": 0.5}), scale)
    with pytest.raises(MethodError, match=r"arms\.v\.beta: unknown option of method 'vcycle'; "
                                          r"allowed: levels, alpha, .*, budget; any method: "
                                          r"note$"):
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
