#!/usr/bin/env bash
# Stop the daemons ci/slurm-up.sh started (by pid, from its started.pids), nothing else.
set -uo pipefail
STATE=${SUITE_SLURM_DIR:-/tmp/suite-slurm}
[ -f "$STATE/started.pids" ] || exit 0
tac "$STATE/started.pids" | while read -r name pid; do
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done
: > "$STATE/started.pids"
