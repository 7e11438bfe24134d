#!/usr/bin/env bash
# Issue 12's must-show: three regressions injected on scratch branches of a clean clone, each run
# at tiny scale with the committed seeds and gated against results/tiny; and a plain re-run that
# passes the exact tier. Each case: a sed on one file, the arms it touches, the gate's verdict.
#   bash benchmarks/regressions.sh OUT   (hours of CPU; run alone; OUT gets one log per case;
#   ONLY=delta0 runs one case)
# The patches (chosen before any run):
#   alpha1  interpolation alpha forced to 1 (the V-cycle keeps only the de-coalesced model)
#   lrbug   the decay reaches its floor halfway through every stage (hurts every arm, baseline
#           included)
#   delta0  prolongation delta forced to 0 (paper 2's coarse work thrown away)
set -uo pipefail
out=$(realpath -m "$1"); mkdir -p "$out"
src=$(cd "$(dirname "$0")/.." && pwd); py=${PYTHON:-python}
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
case_run() {  # name, file, sed expression, benchmark, arms
  local name=$1 file=$2 expr=$3 bench=$4 arms=$5 work=/tmp/regression-$1
  [[ -z "${ONLY:-}" || ",$ONLY," == *",$name,"* ]] || return 0  # ONLY=delta0,plain: a subset
  rm -rf "$work" && git clone -q "$src" "$work" && cd "$work" || return 1
  if [ -n "$file" ]; then
    git checkout -q -b "scratch-$name"
    sed -i "$expr" "$file"
    git diff --quiet && { echo "$name: the patch matched nothing" >> "$out/$name.log"; return 1; }
    git -c user.name=scratch -c user.email=scratch@localhost commit -qam "scratch: $name"
  fi
  { echo "# $name: $(git log --oneline -1)"; git diff HEAD~1 2>/dev/null | head -20
    $py -m suite run "$bench" --scale tiny --arms "$arms" --out runs --no-progress | tail -3
    $py -m suite gate --scale tiny --fresh runs --reference "$src/results" --only "$bench" \
      --arms "$arms"; echo "gate exit: $?"; } >> "$out/$name.log" 2>&1
  cd "$src"; rm -rf "$work"
}
case_run alpha1 suite/operators/paper1.py \
  's/return interpolate(big, grown, o\["alpha"\]), cost/return interpolate(big, grown, 1.0), cost/' \
  gpt baseline,vcycle
case_run lrbug suite/train.py \
  's|    frac = (step - warm) / max(1, total - warm)|    frac = min(1.0, 2 * (step - warm) / max(1, total - warm))|' \
  ode baseline,ode-multilevel
case_run delta0 suite/operators/paper2.py \
  's/prolongate(fine, model, o\["parity"\], o\["delta"\], shared=o\["shared"\])/prolongate(fine, model, o["parity"], 0.0, shared=o["shared"])/' \
  ode baseline,ode-multilevel
case_run plain "" "" "${PLAIN_BENCH:-deit}" "${PLAIN_ARMS:-baseline,vcycle}"
echo "logs in $out"
