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

import importlib
from importlib import metadata

from suite.families import Family
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
from suite.spec import Arm, Scale

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
    except (ImportError, AttributeError) as e:
        raise MethodError(where, f"method {name!r} cannot be loaded: {e}") from None
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
    """The arm's Plan at this scale; `cost` (FLOPs of one step of a size) lets a method fit its
    stages to a FLOP budget, `family` gives the halving rule of its sizes. Raises MethodError
    naming the arm's key, also for a plan whose transfers name an operator nobody registered."""
    from suite import operators

    method = get(arm.method, f"arms.{arm.name}.method")
    p = method.plan(arm, scale, family, cost)
    for step in p.steps:
        if isinstance(step, Transfer) and step.operator not in operators.OPERATORS:
            raise MethodError(f"arms.{arm.name}.method", f"method {method.name!r} plans "
                              f"transfer {step.operator!r}, which no operator implements; "
                              f"known: {', '.join(sorted(operators.OPERATORS))}")
    return p


__all__ = ["BUILTIN", "COMMON", "GSTACK", "ODE", "VCYCLE", "Method", "MethodError", "Option",
           "Plan", "Step", "StepCost", "Train", "Transfer", "available", "coarser", "get",
           "optim_of", "plan"]
