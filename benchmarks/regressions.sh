#!/usr/bin/env bash
# Issue 12's must-show: three regressions injected on scratch branches of a clean clone, each run
# at tiny scale with the committed seeds and gated against results/tiny; and a plain re-run that
# passes the exact tier. Each case: a sed on one file, the arms it touches, the gate's verdict.
#   bash benchmarks/regressions.sh OUT   (hours of CPU; run alone; OUT gets one log and one gate
#   record (.json, what the report reads) per case;
#   ONLY=delta0 runs one case; the plain re-run takes PLAIN_BENCH, PLAIN_ARMS, PLAIN_SEEDS (how
#   many, from seed 0; default all the committed ones) and PLAIN_COMMIT (default HEAD: a past
#   commit re-runs that code, e.g. to show a refactor kept the committed curves bit for bit))
# The patches (chosen before any run):
#   alpha1  interpolation alpha forced to 1 (the V-cycle keeps only the de-coalesced model)
#   lrbug   the decay reaches its floor halfway through every stage (hurts every arm, baseline
#           included)
#   delta0  prolongation delta forced to 0 (paper 2's coarse work thrown away)
# and those that must pass the exact tier (no refactor since the references moved a value):
#   identity-gpt  every gpt arm re-run as it is, seed 0: every evaluation bit-identical to the
#           committed curves (made with shards.spread's integer window rule)
#   identity-ode  the evaluation windows placed by the float32 rule the ode references were made
#           with (the integer rule replaced it later), seed 0 only
#   identity-ode-ablations  the same, for ode's ablation arms (with the baseline, so the gate
#           has a pair)
set -uo pipefail
out=$(realpath -m "$1"); mkdir -p "$out"
src=$(cd "$(dirname "$0")/.." && pwd); py=${PYTHON:-python}
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
case_run() {  # name, file, sed expression, benchmark, arms[, seeds, commit]
  local name=$1 file=$2 expr=$3 bench=$4 arms=$5 n=${6:-} commit=${7:-HEAD}
  local work=/tmp/regression-$1 seeds=() gate_seeds=()
  [[ -z "${ONLY:-}" || ",$ONLY," == *",$name,"* ]] || return 0  # ONLY=delta0,plain: a subset
  rm -rf "$work" && git clone -q "$src" "$work" && cd "$work" || return 1
  git checkout -q "$commit" || return 1
  if [ -n "$n" ]; then
    seeds=(--seeds "$n"); gate_seeds=(--seeds "$(seq -s, 0 $((n - 1)))")
  fi
  if [ -n "$file" ]; then
    git checkout -q -b "scratch-$name"
    sed -i "$expr" "$file"
    git diff --quiet && { echo "$name: the patch matched nothing" >> "$out/$name.log"; return 1; }
    git -c user.name=scratch -c user.email=scratch@localhost commit -qam "scratch: $name"
  fi
  { echo "# $name: $(git log --oneline -1)"; [ -z "$file" ] || git diff HEAD~1 | head -20
    $py -m suite run "$bench" --scale tiny --arms "$arms" "${seeds[@]}" --out runs \
      --no-progress | tail -3
    label="$name ($(git -C "$work" rev-parse --short HEAD))"
    cd "$src" && $py -m suite gate --scale tiny --fresh "$work/runs" --reference "$src/results" \
      --only "$bench" --arms "$arms" "${gate_seeds[@]}" --json "$out/$name.json" \
      --label "$label"; echo "gate exit: $?"
  } >> "$out/$name.log" 2>&1
  cd "$src"; rm -rf "$work"
}
case_run alpha1 suite/operators/paper1.py \
  's/return interpolate(big, grown, o\["alpha"\]), cost/return interpolate(big, grown, 1.0), cost/' \
  gpt baseline,vcycle
case_run lrbug suite/spec.py \
  's|    frac = (step - warm) / max(1, total - warm)|    frac = min(1.0, 2 * (step - warm) / max(1, total - warm))|' \
  ode baseline,ode-multilevel
case_run delta0 suite/operators/paper2.py \
  's/prolongate(fine, model, o\["parity"\], o\["delta"\], shared=o\["shared"\])/prolongate(fine, model, o["parity"], 0.0, shared=o["shared"])/' \
  ode baseline,ode-multilevel
old_windows='s|    return torch.arange(n, dtype=torch.long) \* (count - 1) // (n - 1)|    return torch.linspace(0, count - 1, n).long()|'
case_run identity-gpt "" "" gpt baseline,vcycle,vcycle-preserving,ode-multilevel,gstack 1
case_run identity-ode suite/data/shards.py "$old_windows" ode baseline,ode-multilevel 1
case_run identity-ode-ablations suite/data/shards.py "$old_windows" ode \
  baseline,ode-step2,ode-delta05,ode-until-scaled,ode-shared-averaged 1
case_run plain "" "" "${PLAIN_BENCH:-deit}" "${PLAIN_ARMS:-baseline,vcycle}" \
  "${PLAIN_SEEDS:-}" "${PLAIN_COMMIT:-HEAD}"
echo "logs in $out"
