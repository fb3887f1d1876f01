#!/usr/bin/env bash
# CI: a second, separate Slurm 22.05 cluster `multi` on this machine, with several real nodes: one
# slurmd per network namespace (burst-n1, burst-n2, ...), each with its own hostname (a UTS namespace)
# and address, joined to the root namespace by a veth pair (10.77.N.1 <-> 10.77.N.2). slurmctld runs in
# the root namespace on 10.77.0.1 (a veth pair of its own, both ends in the root namespace) with ports
# 6917/6918, so it never meets CI's one-node cluster (6817/6818, /etc/slurm). The nodes share CI's
# munged (its socket is a path, and paths cross network namespaces) and the agent's spool socket.
# Inside a node's namespaces /etc/slurm is /etc/slurm-multi (a bind mount in its private mount
# namespace), so everything under its slurmd (relays, the epilog and its `burst-agent deliver`, their
# scontrol and squeue) talks to this cluster, as on a real proxy node.
# No network but loopback and the addresses made here. Run as root; tests/multinode uses it.
#
#   bash .ci/multinode-setup.sh [up]          # set up (again) and start; idempotent
#   bash .ci/multinode-setup.sh kill-node n1  # lose a node: kill -9 every process in its namespace
#   bash .ci/multinode-setup.sh start-node n1 # start its slurmd again (ReturnToService=2 resumes it)
#   bash .ci/multinode-setup.sh down          # stop and remove everything this script made
#   MULTINODE_NODES=3 ...                      # three nodes (default 2)
#   MULTINODE_SPOOL=DIR ...                    # the agent spool the plugin and the epilog name

set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${MULTINODE_NODES:-2}"
SPOOL="${MULTINODE_SPOOL:-/var/spool/burst-multi}"
CONF_DIR=/etc/slurm-multi
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/lib/slurm-multi
LOG_DIR=/var/log/slurm-multi
RUN_DIR=/run/slurm-multi
CTL_ADDR=10.77.0.1
CTL_PORT=6917
NODE_PORT=6918
NS_PREFIX=burst-
MARK="SLURM_CONF=$CONF"

say() { printf 'multinode-setup: %s\n' "$*"; }
die() {
  printf 'multinode-setup: FAILED: %s\n' "$*" >&2
  local f
  for f in "$LOG_DIR"/*.log; do
    [ -f "$f" ] && { printf '== tail %s\n' "$f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}
node_names() { local i; for i in $(seq 1 "$NODES"); do echo "n$i"; done; }
node_index() { [[ "$1" =~ ^n([0-9]+)$ ]] || die "no such node: $1"; echo "${BASH_REMATCH[1]}"; }
multi() { SLURM_CONF=$CONF "$@"; }
# The nodes whose namespace exists now (an earlier run may have made more than NODES).
made_nodes() { ip netns list | awk '{print $1}' | sed -n "s/^$NS_PREFIX\(n[0-9]*\)$/\1/p"; }

# The pid in FILE when it is still the process we started: named NAME and marked by our SLURM_CONF
# (slurmctld) or living in our namespace NS (slurmd). A stale pid file may name someone else's now.
our_pid() {
  local file=$1 name=$2 ns=${3:-} pid
  pid="$(cat "$file" 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  if [ -n "$ns" ]; then
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$ns" ] || return 1
  else
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "$MARK" || return 1
  fi
  echo "$pid"
}

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# kill -9 every process in the node's namespace (slurmd, slurmstepd, relays, deliveries) until none is
# left: all of them descend from the slurmd this script started there.
kill_node() {
  local ns=$NS_PREFIX$1 pids
  ip netns list | grep -qw "$ns" || return 0
  for _ in $(seq 50); do
    pids="$(ip netns pids "$ns")"
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  die "processes left in $ns: $(ip netns pids "$ns" | tr '\n' ' ')"
}

net_up() {
  local i ns host peer
  if ! ip link show bctl-a >/dev/null 2>&1; then
    ip link add bctl-a type veth peer name bctl-b  # a stand-in for a dummy link (no such module here)
  fi
  ip addr replace "$CTL_ADDR/32" dev bctl-a
  ip link set bctl-a up
  ip link set bctl-b up
  for i in $(seq 1 "$NODES"); do
    ns=${NS_PREFIX}n$i host=bn$i-h peer=bn$i-n
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$host" >/dev/null 2>&1; then
      ip link add "$host" type veth peer name "$peer"
      ip link set "$peer" netns "$ns"
    fi
    ip addr replace "10.77.$i.1/24" dev "$host"
    ip link set "$host" up
    ip -n "$ns" addr replace "10.77.$i.2/24" dev "$peer"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$peer" up
    ip -n "$ns" route replace "$CTL_ADDR/32" via "10.77.$i.1"
  done
}

write_conf() {
  local cpus=16 mem n i
  mem="$(free -m | awk '/^Mem:/ {print int($2 * 0.8 / '"$NODES"')}')"
  install -d -m 0755 "$CONF_DIR" "$RUN_DIR"
  install -d -o slurm -g slurm -m 0755 "$STATE_DIR" "$STATE_DIR/ctld" "$LOG_DIR"
  for n in $(node_names); do install -d -m 0755 "$STATE_DIR/slurmd-$n"; done
  {
    cat <<EOF
# Written by .ci/multinode-setup.sh: a second test cluster of $NODES nodes, one per network namespace.
ClusterName=multi
SlurmctldHost=$(hostname -s)($CTL_ADDR)
SlurmctldPort=$CTL_PORT
SlurmdPort=$NODE_PORT
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
# Job ids far from CI's cluster: a command that reached the wrong cluster would name no job there.
FirstJobId=700000
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd-%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# Each node claims 16 cpus whatever this machine has: up to 16 relays start on n1 before any on n2
# (Slurm fills idle cores before it oversubscribes), and no node drains for having fewer.
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
MpiDefault=none
SchedulerParameters=sched_interval=2
# A lost node is noticed within SlurmdTimeout; its batch jobs are requeued (the plugin sets Requeue=1);
# a node whose slurmd registers again returns to service by itself.
SlurmdTimeout=10
SlurmctldTimeout=30
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
InactiveLimit=0
Waittime=0
# burst-agent: see deploy/slurm/slurm.conf.snippet
JobSubmitPlugins=lua
Epilog=$CONF_DIR/burst-epilog.sh
GresTypes=gpu
Licenses=rescale_cores:1000
EOF
    # n1 weighs least: jobs start there first while it has room (a requeued job may go anywhere).
    for i in $(seq 1 "$NODES"); do
      echo "NodeName=n$i NodeAddr=10.77.$i.2 NodeHostname=n$i CPUs=$cpus RealMemory=$mem Weight=$i State=UNKNOWN"
    done
    echo "PartitionName=rescale Nodes=n[1-$NODES] Default=NO MaxTime=INFINITE OverSubscribe=FORCE:16 State=UP"
  } >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  chmod 0644 "$CONF"
  sed -E "s|^local SPOOL_DIR = .*$|local SPOOL_DIR = \"$SPOOL\"|" "$REPO/deploy/slurm/job_submit.lua" \
    >"$CONF_DIR/job_submit.lua.tmp"
  grep -qx "local SPOOL_DIR = \"$SPOOL\"" "$CONF_DIR/job_submit.lua.tmp" || die "SPOOL_DIR not set in the lua"
  install -m 0644 "$CONF_DIR/job_submit.lua.tmp" "$CONF_DIR/job_submit.lua"
  sed -E "s|^SPOOL_DIR=.*$|SPOOL_DIR=$SPOOL|" "$REPO/deploy/slurm/epilog.sh" >"$CONF_DIR/burst-epilog.sh.tmp"
  grep -qx "SPOOL_DIR=$SPOOL" "$CONF_DIR/burst-epilog.sh.tmp" || die "SPOOL_DIR not set in the epilog"
  install -m 0755 "$CONF_DIR/burst-epilog.sh.tmp" "$CONF_DIR/burst-epilog.sh"
  rm -f "$CONF_DIR"/*.tmp
  { echo "127.0.0.1 localhost"; echo "$CTL_ADDR $(hostname -s)"
    for i in $(seq 1 "$NODES"); do echo "10.77.$i.2 n$i"; done; } >"$CONF_DIR/hosts"  # the nodes' /etc/hosts
  say "wrote $CONF ($NODES nodes, $cpus cpus and ${mem} MB each as declared), job_submit.lua and burst-epilog.sh (spool $SPOOL)"
}

start_node() {
  local n=$1 ns
  node_index "$n" >/dev/null
  ns=$NS_PREFIX$n
  our_pid "$RUN_DIR/slurmd-$n.pid" slurmd "$ns" >/dev/null && return 0
  # Its network namespace, a hostname of its own (UTS) and a private mount namespace in which
  # /etc/slurm is this cluster's (and /etc/hosts names the nodes); the host's mounts are untouched.
  # (Not ip netns exec: its fresh /sys hides /sys/fs/cgroup, and slurmd 22.05 will not start then.)
  # The guard: slurmd starts only when /etc/slurm is this cluster's.
  nsenter --net="/run/netns/$ns" -- unshare --uts --mount --propagation private -- sh -c \
    "mount --bind $CONF_DIR /etc/slurm && mount --bind $CONF_DIR/hosts /etc/hosts && hostname $n &&
     grep -qx ClusterName=multi /etc/slurm/slurm.conf && exec /usr/sbin/slurmd -N $n" \
    || die "slurmd of $n did not start"
  for _ in $(seq 100); do
    our_pid "$RUN_DIR/slurmd-$n.pid" slurmd "$ns" >/dev/null && return 0
    sleep 0.1
  done
  die "slurmd of $n wrote no pid file"
}

wait_idle() {
  local n state
  for n in $(node_names); do
    for _ in $(seq 120); do
      state="$(multi sinfo -h -N -n "$n" -o '%t' 2>/dev/null | head -n1 || true)"
      case "$state" in idle | mix | alloc) break ;; esac
      sleep 0.5
    done
    case "$state" in idle | mix | alloc) ;; *) die "node $n never became idle (state: '${state:-none}')" ;; esac
  done
}

up() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null || die "slurmctld/slurmd not installed (.ci/slurm-setup.sh)"
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged is not running (.ci/slurm-setup.sh starts it)"
  local n pid logged
  for n in $(made_nodes); do
    kill_node "$n"
    [ "$(node_index "$n")" -le "$NODES" ] || ip netns del "$NS_PREFIX$n"
  done
  if pid="$(our_pid "$RUN_DIR/slurmctld.pid" slurmctld)"; then stop_pid "$pid"; fi
  net_up
  write_conf
  say "starting slurmctld on $CTL_ADDR:$CTL_PORT"
  logged=0  # lines of slurmctld.log before this start (none on a fresh machine)
  if [ -f "$LOG_DIR/slurmctld.log" ]; then logged="$(wc -l <"$LOG_DIR/slurmctld.log")"; fi
  # SLURM_CONF, not -f: slurmctld finds job_submit.lua beside the file SLURM_CONF names. -c: no old jobs.
  multi /usr/sbin/slurmctld -c || die "slurmctld did not start"
  for _ in $(seq 100); do multi scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
  for n in $(node_names); do start_node "$n"; done
  wait_idle
  tail -n "+$((logged + 1))" "$LOG_DIR/slurmctld.log" | grep -q 'burst-agent job_submit.lua loaded' \
    || die "job_submit.lua not loaded"
  say "cluster multi up: $(multi sinfo -h -N -o '%N=%t' | tr '\n' ' ')"
}

down() {
  local n pid ns
  for n in $(made_nodes); do
    kill_node "$n"
    ns=$NS_PREFIX$n
    ip netns del "$ns" 2>/dev/null || true  # its veth pair goes with it
  done
  if pid="$(our_pid "$RUN_DIR/slurmctld.pid" slurmctld)"; then stop_pid "$pid"; fi
  ip link del bctl-a 2>/dev/null || true
  rm -rf "$CONF_DIR" "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$SPOOL"  # the spool: made by the tests' agent
  say "removed the multi cluster, its namespaces, links and files"
}

[ "$(id -u)" -eq 0 ] || die "must run as root"
case "${1:-up}" in
  up) up ;;
  down) down ;;
  kill-node) kill_node "${2:?node}" ;;
  start-node) start_node "${2:?node}" ;;
  *) die "usage: $0 [up|down|kill-node NODE|start-node NODE]" ;;
esac
