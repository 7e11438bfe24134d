#!/usr/bin/env bash
# Debian's Slurm and munge, for tests/test_slurm.py's one-node cluster (ci/slurm-up.sh). Optional:
# without them, or without root, that test skips and says why.
set -u
if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) \
    >/dev/null 2>&1 || echo "ci/slurm-deps.sh: could not install slurm-wlm munge; the Slurm test skips"
fi
exit 0
