#!/usr/bin/env bash
# Re-make one benchmark's committed tiny results on the fair protocol (issue 23; docs/tuning.md):
#   1. its [tuning] trials (resumable), then the record in results/tuning/tiny/BENCH/;
#   2. every arm with the tuned values, its declared sweeps, and the matched-budget baselines
#      that the verdicts need, into a staging folder (resumable: run it again to go on);
#   3. the untuned runs move to results/untuned/tiny/BENCH (the report shows both verdicts), the
#      tuned ones into results/tiny/BENCH, and the report and README headline are regenerated.
# Usage: bash benchmarks/remake.sh gpt   (the CPU default: one single-thread run per core at a time;
#        JOBS=N for another number of runs at once)
# Run it alone on the machine; commit results/ when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:?name a benchmark, e.g. gpt}
JOBS=${JOBS:-}
PY=${PY:-.nox/_suite/bin/python}
STAGE=runs/remake
export HF_HUB_OFFLINE=1
"$PY" -m suite tune "$B" --scale tiny --resume --no-progress ${JOBS:+--jobs "$JOBS"}
"$PY" -m suite run "$B" --scale tiny --out "$STAGE" ${JOBS:+--jobs "$JOBS"} --resume
for sweep in $("$PY" - "$B" <<'PYEOF'
import sys
from suite.registry import load_benchmarks
print(" ".join(n for n, s in load_benchmarks()[sys.argv[1]].sweeps.items() if "tiny" in s.scales))
PYEOF
); do
  "$PY" -m suite run "$B" --scale tiny --sweep "$sweep" --out "$STAGE" ${JOBS:+--jobs "$JOBS"} --resume
done
# exit 2 with "no arm ... has a saving to check" is an answer, not a failure
"$PY" -m suite run "$B" --scale tiny --matched --out "$STAGE" ${JOBS:+--jobs "$JOBS"} --resume || true
if [ -d "results/tiny/$B" ] && [ ! -d "results/untuned/tiny/$B" ]; then
  mkdir -p results/untuned/tiny
  git mv "results/tiny/$B" "results/untuned/tiny/$B"
fi
rm -rf "results/tiny/$B"
cp -r "$STAGE/tiny/$B" "results/tiny/$B"
rm -rf "results/tiny/$B/.jobs"
"$PY" -m suite report --scale tiny --update-readme README.md
echo "remade $B: commit results/tuning/tiny/$B results/untuned/tiny/$B results/tiny README.md"
