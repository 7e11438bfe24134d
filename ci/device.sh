#!/usr/bin/env bash
# `python -m suite ...` on a lent GPU machine that has no network (torch, transformers, timm,
# tabulate and matplotlib already installed; fvcore from ../shared/device-wheels). The small
# scale reads data/corpora/offline-en, which must travel with the tree (it is git-ignored):
#   run(carry=["data/corpora/offline-en"],
#       command="bash ci/device.sh run gpt --scale small --device cuda --seeds 2 --out $OUT/results")
# One device command may run at most 10 minutes: split arms and seeds over several calls
# (--arms, --first-seed); results/<scale>/<bench>/<arm>/seed-<n> folders merge by copying.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import fvcore" 2>/dev/null; then
  pip install -q --no-index --find-links ../shared/device-wheels fvcore
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
exec python3 -m suite "$@"
