#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests of the
# Slurm path (tests/test_slurm.py) and for trying `run --executor slurm` without a cluster.
# Everything lives in $SUITE_SLURM_DIR (default /tmp/suite-slurm): its slurm.conf, spool, logs,
# and `started.pids`, the daemons this script started (ci/slurm-down.sh stops those, and only
# those). Prints `export SLURM_CONF=...` for the shell that submits. Needs root (slurmd runs
# jobs as their users) and the packages: apt-get install slurm-wlm munge.
set -euo pipefail
STATE=${SUITE_SLURM_DIR:-/tmp/suite-slurm}
HOST=$(hostname -s)
CPUS=${SUITE_SLURM_CPUS:-$(nproc)}
for tool in munged slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "ci/slurm-up.sh: $tool not found; apt-get install slurm-wlm munge" >&2; exit 2; }
done
mkdir -p "$STATE"/spool/ctld "$STATE"/spool/d "$STATE"/log "$STATE"/run
: > "$STATE/started.pids"
cat > "$STATE/slurm.conf" <<CONF
ClusterName=suite
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ReturnToService=2
JobRequeue=1
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$STATE/slurm.conf
if ! munge -n >/dev/null 2>&1; then  # a munged already serving this machine is used, not ours
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  runuser -u munge -- munged --force 2>/dev/null || munged --force
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  echo "munged $(cat /run/munge/munged.pid)" >> "$STATE/started.pids"
fi
slurmctld -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$STATE/run/slurmctld.pid" ] && break; sleep 0.1; done
echo "slurmctld $(cat "$STATE/run/slurmctld.pid")" >> "$STATE/started.pids"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$STATE/run/slurmd.pid" ] && break; sleep 0.1; done
echo "slurmd $(cat "$STATE/run/slurmd.pid")" >> "$STATE/started.pids"
for _ in $(seq 300); do  # the node answers: idle (or mixed/allocated when jobs run)
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "ci/slurm-up.sh: the node did not come up; see $STATE/log/" >&2
exit 1
