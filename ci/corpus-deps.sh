#!/usr/bin/env bash
# Debian packages whose text makes up the offline-en corpus (suite/data/corpus.py). Installed only where
# apt-get runs as root; elsewhere `python -m suite corpus build` names what is missing.
set -u
pkgs="dict-gcide dict-foldoc dict-jargon dict-devil fortunes"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null 2>&1 \
    || echo "ci/corpus-deps.sh: could not install$missing"
else
  echo "ci/corpus-deps.sh: missing Debian packages:$missing (install them as root)"
fi
exit 0
