#!/bin/bash
# Test stand-in for `burst-agent relay`: records what the job_submit.lua wrapper handed it into
# $SLURM_SUBMIT_DIR/relay-$SLURM_JOB_ID/, sleeps $BURST_STUB_SLEEP seconds (recording a SIGTERM in
# the file `signal`), then exits with $BURST_STUB_EXIT (default 0).
set -eu
out="$SLURM_SUBMIT_DIR/relay-$SLURM_JOB_ID"
mkdir -p "$out.tmp"
printf '%s\n' "$@" >"$out.tmp/argv"
id -un >"$out.tmp/user"
readlink "/proc/$$/fd/3" >"$out.tmp/fd3" || true
readlink "/proc/$$/fd/4" >"$out.tmp/fd4" || true
script="" request=""
while [ $# -gt 0 ]; do
  case "$1" in
    --script) script="$2"; shift 2 ;;
    --request) request="$2"; shift 2 ;;
    *) shift ;;
  esac
done
cat "$script" >"$out.tmp/script"
cat "$request" >"$out.tmp/request.json"
env | sort >"$out.tmp/env"
mv "$out.tmp" "$out"
echo "stub relay: job $SLURM_JOB_ID"
trap 'echo TERM >"$out/signal"; exit 143' TERM
sleep "${BURST_STUB_SLEEP:-0}" &
wait $!
exit "${BURST_STUB_EXIT:-0}"
