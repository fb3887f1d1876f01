#!/bin/sh
# burst-agent Slurm Epilog (slurmd runs it as root on the proxy node after every job ends).
#
# For a job of a Rescale partition it starts `burst-agent deliver` in the background, as the job's
# owner (setpriv: the uid, gid and groups Slurm gives), and returns at once. The delivery finishes what
# a relay killed by scancel or a time limit could not do within KillWait: the rest of the remote log
# into the job's own output file and the outputs into the workdir. It writes only as the job's owner,
# exactly where the relay would have; the agent itself never writes into a user's directory. When the
# relay delivered everything, the delivery sees that and exits at once. Install: docs/slurm.md.
# .ci/slurm-setup.sh and the tests rewrite the NAME=value lines between the SETTINGS markers.

# BEGIN SETTINGS
BURST_AGENT=/opt/burst-agent/venv/bin/burst-agent
SPOOL_DIR=/var/spool/burst-agent
RESCALE_PARTITIONS=rescale
# END SETTINGS

case ",$RESCALE_PARTITIONS," in
  *",${SLURM_JOB_PARTITION:-},"*) ;;
  *) exit 0 ;;
esac
case "${SLURM_JOB_UID:-0}" in
  0|*[!0-9]*) exit 0 ;;  # never as root
esac
[ -x "$BURST_AGENT" ] && [ -S "$SPOOL_DIR/agent.sock" ] || exit 0
# --detach returns once the delivery leads a session of its own: slurmd kills the epilog's process
# group when the epilog ends.
setpriv --reuid="$SLURM_JOB_UID" --regid="${SLURM_JOB_GID:-$SLURM_JOB_UID}" --init-groups --reset-env \
  -- "$BURST_AGENT" deliver --detach --job "$SLURM_JOB_ID" --spool "$SPOOL_DIR" </dev/null >/dev/null 2>&1
exit 0
