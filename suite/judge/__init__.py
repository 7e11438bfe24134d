"""The judging wing: reads run folders (suite/results.py) and the papers' claims, never a model.

`analysis` (savings to a target with their intervals, power), `savings` (every arm against its
baseline, beside the claims, with the declared rule's verdict), `report` (REPORT.md, plots, the
README's headline), `compare` (the `compare` and `power` tables), `gate` (fresh runs against
committed ones), `simulate` (the gate's error rates), `claims` (reference/claims.toml). Imports
no torch: a machine without it can judge results (tests/test_layout.py holds it to that).
"""
