#!/usr/bin/env bash
# `python -m suite ...` on a lent GPU machine with no network (its python3 has torch,
# transformers, timm, scipy, tabulate, matplotlib; fvcore comes from the shared wheels). Runs the
# suite command given, then packs runs/ into $OUT/runs.tgz: the device tool brings back at most
# 8 files, 2 folders down, and a results tree is deeper. The small scale reads
# data/corpora/offline-en, which must travel with the tree (it is git-ignored), e.g.
#   run(carry=["data/corpora/offline-en"],
#       command="bash ci/device.sh run gpt --scale small --device cuda --arms baseline --seeds 2")
# then here: tar xzf runs.tgz && cp -r runs/small results/ && python -m suite report --scale small
# One device command may run 10 minutes at most: split arms and seeds over calls (--arms,
# --first-seed); seed folders from several calls merge by copying.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import fvcore" 2>/dev/null; then
  for d in ../shared/device-wheels shared/device-wheels .whl; do
    if ls "$d"/fvcore-*.whl >/dev/null 2>&1; then
      python3 -m pip install -q --no-index --find-links "$d" fvcore && break
    fi
  done
  python3 -c "import fvcore" 2>/dev/null || {
    echo "ci/device.sh: fvcore is not installed and no wheels were found in ../shared/device-wheels," \
         "shared/device-wheels or .whl: copy them to .whl (git-ignored) and carry it" >&2; exit 2; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 PYTHONUNBUFFERED=1
status=0
if [ "${1:-}" = pytest ]; then  # the CUDA tests: bash ci/device.sh pytest tests/test_cuda.py
  shift; python3 -m pytest -q "$@" || status=$?
else
  python3 -m suite "$@" || status=$?
fi
if [ -n "${OUT:-}" ] && [ -d runs ]; then
  tar czf "$OUT/runs.tgz" runs && echo "ci/device.sh: packed runs/ into \$OUT/runs.tgz"
fi
exit $status
