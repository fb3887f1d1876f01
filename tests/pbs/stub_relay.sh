#!/bin/bash
# Test stand-in for `burst-agent relay` on a PBS proxy: records what the execjob_launch hook handed
# it into $PBS_O_WORKDIR/relay/ (argv, env, the files and their modes), then exits $BURST_STUB_EXIT.
set -eu
out="$PBS_O_WORKDIR/relay"
mkdir -p "$out"
printf '%s\n' "$@" >"$out/argv"
env | sort >"$out/env"
script="" request=""
while [ $# -gt 0 ]; do
  case "$1" in
    --script) script="$2"; shift 2 ;;
    --request) request="$2"; shift 2 ;;
    *) shift ;;
  esac
done
cat "$script" >"$out/script"
cat "$request" >"$out/request.json"
stat -c '%a' "$script" "$request" "$(dirname "$script")" >"$out/modes"
echo "stub relay: job $PBS_JOBID"
exit "${BURST_STUB_EXIT:-0}"
