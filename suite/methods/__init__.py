"""Methods turn an arm of a definition into a Plan of Train and Transfer steps; one module per
method (baseline, vcycle, ode, gstack), each a METHOD record (suite/methods/base.py).

A method from elsewhere plugs in without touching the suite, either way:
- a package registers it under the entry-point group `multilevel_suite.methods`
  (`[project.entry-points."multilevel_suite.methods"] mine = "my_pkg.methods:METHOD"`), and an
  arm says `method = "mine"`;
- an arm names it directly: `method = "my_pkg.methods:make"` (a Method, or a callable that
  returns one).
The runner and the meter learn nothing new: a plug-in's Transfer steps name operators of
suite.operators, its own registered there (suite.operators.register) when its module loads.
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib import metadata

from suite.families import Family, Inputs
from suite.methods import baseline, gstack, ode, vcycle
from suite.methods.base import (
    COMMON,
    Method,
    MethodError,
    Option,
    Plan,
    Step,
    StepCost,
    Train,
    Transfer,
    coarser,
    optim_of,
)
from suite.spec import CRITERIA, Arm, Scale

ENTRY_POINTS = "multilevel_suite.methods"
BUILTIN: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (baseline, vcycle, ode, gstack)}
VCYCLE, ODE, GSTACK = vcycle.VCYCLE, ode.ODE, gstack.GSTACK


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def _as_method(obj: object, where: str) -> Method:
    if callable(obj) and not isinstance(obj, Method):
        obj = obj()
    if not isinstance(obj, Method):
        raise MethodError(where, f"{type(obj).__name__} is not a suite.methods.Method")
    if "heldout_loss" not in obj.criteria or not set(obj.criteria) <= set(CRITERIA):
        raise MethodError(where, f"method {obj.name!r} declares criteria {obj.criteria!r}; "
                          f"allowed: heldout_loss and any of {', '.join(CRITERIA)}")
    return obj


def get(name: str, where: str = "method") -> Method:
    """The method called `name`: built in, registered by an installed package's entry point,
    or 'package.module:attribute'. Raises MethodError (under `where`) naming what is known."""
    if name in BUILTIN:
        return BUILTIN[name]
    eps = _entry_points()
    try:
        if name in eps:
            return _as_method(eps[name].load(), where)
        if ":" in name:
            module, _, attr = name.partition(":")
            return _as_method(getattr(importlib.import_module(module), attr), where)
    except MethodError:
        raise
    except Exception as e:  # noqa: BLE001 - a third party's import or factory, named
        raise MethodError(where, f"method {name!r} cannot be loaded: {type(e).__name__}: {e}") \
            from None
    raise MethodError(where, f"unknown method {name!r}; allowed: "
                      f"{', '.join([*BUILTIN, *sorted(eps)])}, or 'package.module:attribute'")


def available() -> dict[str, str]:
    """Every method this installation knows, name -> one line (built in and entry points): a
    plug-in's own description and where it comes from, or why it cannot be loaded (listing
    methods must not fail for one broken package)."""
    out = {name: m.doc for name, m in BUILTIN.items()}
    for name, ep in _entry_points().items():
        if name in BUILTIN:  # `get` takes the built-in: say so rather than list the plug-in
            out[name] += f" (plug-in {ep.value} has the same name and is not used)"
            continue
        try:
            doc = f"{_as_method(ep.load(), name).doc} (plug-in: {ep.value})"
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a third-party import, listed
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            doc = f"plug-in: {ep.value}; cannot be loaded: {why}"
        out[name] = " ".join(doc.split()).replace("|", "/")  # one table row
    return out


def plan(arm: Arm, scale: Scale, cost: StepCost | None = None,
         family: Family | None = None) -> Plan:
    """The arm's Plan at this scale, trained with the scale's [train] table under the arm's own
    overrides ([arms.<name>.train]); `cost` (FLOPs of one step of a size) lets a method fit its
    stages to a FLOP budget, `family` gives the halving rule of its sizes. Raises MethodError
    naming the arm's key, also for a plan whose transfers name an operator nobody registered."""
    from suite import operators

    key = f"arms.{arm.name}.method"
    method = get(arm.method, key)
    if arm.train:  # the arm's own [train] values: every stage of its plan derives from them
        scale = dataclasses.replace(scale, train=arm.optim(scale))
    budget = arm.options.get("budget")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool) and 0 < budget <= 1:
        # a fraction of the budget is a definition with that many steps: every stage, schedule
        # and FLOP fit of the method follows from scale.steps (a bad value: options() says so)
        scale = dataclasses.replace(scale, steps=max(1, round(scale.steps * budget)))
    try:
        p = method.plan(arm, scale, family, cost)
    except MethodError:
        raise
    except Exception as e:  # noqa: BLE001 - a plug-in's own code: say whose and what
        raise MethodError(key, f"method {method.name!r} failed to plan: "
                          f"{type(e).__name__}: {e}") from None
    problem = _plan_problem(p, scale, family, set(operators.OPERATORS))
    if problem:
        raise MethodError(key, f"method {method.name!r} plans {problem}")
    return dataclasses.replace(p, criteria=method.criteria)


def _plan_problem(p: object, scale: Scale, family: Family | None, known: set[str]) -> str:
    """What makes `p` no plan the runner can run and the meter can compare ('' if nothing):
    every Train has a positive integer count of steps and level; the arm's own model (level 1,
    not auxiliary) is the definition's model, the baseline's, so savings compare like with
    like, and trains at least once; every Transfer names a registered operator."""
    if not isinstance(p, Plan) or not p.steps:
        return f"{type(p).__name__ if not isinstance(p, Plan) else 'no steps'}; a method's " \
            "plan is a Plan with at least one Train step"
    from suite.families import FAMILIES

    same = (family or FAMILIES["gpt2"]).resolved  # with no family, coarser's rule too
    own_model_trains = False
    for i, step in enumerate(p.steps):
        if isinstance(step, Transfer):
            if step.operator not in known:
                return f"transfer {step.operator!r} (step {i}), which no operator implements; " \
                    f"known: {', '.join(sorted(known))}"
            continue
        if not isinstance(step, Train):
            return f"{type(step).__name__} at step {i}; allowed: Train, Transfer"
        for what in ("steps", "level"):
            v = getattr(step, what)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                return f"Train {what}={v!r} at step {i}; allowed: an integer >= 1"
        if not isinstance(step.model, dict):
            return f"Train model {step.model!r} at step {i}; allowed: a size table (dict)"
        if family is not None and (errs := family.check(step.model, Inputs())):
            return f"Train model {step.model!r} at step {i}: " + \
                "; ".join(f"{k}: {m}" for k, m in errs)
        if step.level == 1 and not step.auxiliary:
            if same(step.model) != same(scale.model):
                return f"level 1 (step {i}) with model {step.model!r}; level 1 is the " \
                    f"definition's model {scale.model!r}, the baseline's, or savings compare " \
                    "unlike models"
            own_model_trains = True
    if not own_model_trains:
        return "no Train of the arm's own model; at least one Train step is level 1, not " \
            "auxiliary"
    return ""


__all__ = ["BUILTIN", "COMMON", "GSTACK", "ODE", "VCYCLE", "Method", "MethodError", "Option",
           "Plan", "Step", "StepCost", "Train", "Transfer", "available", "coarser", "get",
           "optim_of", "plan"]
