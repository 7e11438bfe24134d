"""`python -m suite`. Importing torch and transformers takes seconds: a signal then (a
scheduler's SIGTERM, a Ctrl-C) ends the process with one line, not a traceback from inside
an import; nothing has started, so nothing is written. `run` then installs its own handlers
(suite/run/grid.py, suite/run/state.py), which turn a signal into a checkpoint and a resume
command."""

import signal
import sys


def _starting(signum: int, _frame: object) -> None:
    raise SystemExit(f"python -m suite: {signal.Signals(signum).name} while starting; "
                     "nothing was run or written")


_EARLY = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
_before = {sig: signal.signal(sig, _starting) for sig in _EARLY}
try:
    from suite.cli import main
finally:
    for sig, old in _before.items():
        signal.signal(sig, old)

code = main()
if "suite.run.distributed" in sys.modules:  # only `run` imports it (and torch): a process group
    from suite.run.distributed import leave  # may need leaving; the judging commands never do

    leave(code)
sys.exit(code)
