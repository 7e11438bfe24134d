"""The papers' claims (reference/claims.toml) as typed rows."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from suite.errors import SuiteError
from suite.spec import CRITERIA as CRITERIA_NAMES

CLAIMS_FILE = Path(__file__).resolve().parents[2] / "reference" / "claims.toml"
METRICS = ("flops_saved", "walltime_saved", "tokens_saved")
CRITERIA = tuple(CRITERIA_NAMES.values())  # as claims state them


class ClaimsError(SuiteError, ValueError):
    """A claims file that cannot be used; names the file, the row and the key."""


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    source: str
    model: str
    levels: int
    metric: str
    value: float
    quality: str
    quality_source: str
    hardware: str
    benchmark: str
    arm: str
    criterion: str = CRITERIA_NAMES["heldout_loss"]


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ClaimsError(f"{path}: cannot read claims: {e}") from None
    names = {f.name for f in fields(Claim)}
    required = {f.name for f in fields(Claim) if f.name != "criterion"}
    out = []
    for i, row in enumerate(doc.get("claim", [])):
        where = f"{path}: claim[{i}]"
        if unknown := set(row) - names:
            raise ClaimsError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: "
                              f"{', '.join(sorted(names))}")
        if missing := required - set(row):
            raise ClaimsError(f"{where}: missing key(s) {sorted(missing)}")
        if row["metric"] not in METRICS:
            raise ClaimsError(f"{where}.metric: {row['metric']!r}; allowed: {', '.join(METRICS)}")
        if row.get("criterion", CRITERIA[0]) not in CRITERIA:
            raise ClaimsError(f"{where}.criterion: {row['criterion']!r}; allowed: "
                              f"{', '.join(CRITERIA)}")
        if not isinstance(row["value"], (int, float)) or not 0 <= row["value"] < 1:
            raise ClaimsError(f"{where}.value: {row['value']!r}; allowed: a fraction in [0, 1)")
        out.append(Claim(**row))
    return out
