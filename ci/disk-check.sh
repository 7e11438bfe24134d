#!/usr/bin/env bash
# Fails early, with a message that says why, where the disk cannot hold the suite's virtualenv
# (about 6 GB); otherwise pip fails minutes later with a traceback ("No space left on device").
# Usage: ci/disk-check.sh GIB_NEEDED [DIR]
set -eu
need_gib=${1:?usage: ci/disk-check.sh GIB_NEEDED [DIR]}
dir=${2:-.}
free_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
free_gib=$((free_kib / 1024 / 1024))
if [ "$free_gib" -lt "$need_gib" ]; then
  echo "ci/disk-check.sh: $free_gib GiB free under $(cd "$dir" && pwd), $need_gib GiB needed" \
       "(the suite's virtualenv is about 6 GB); free some space and run again" >&2
  exit 1
fi
echo "ci/disk-check.sh: $free_gib GiB free under $(cd "$dir" && pwd) ($need_gib GiB needed)"
