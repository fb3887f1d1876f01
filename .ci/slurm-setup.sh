#!/usr/bin/env bash
# CI: a one-node Slurm 22.05 cluster (munge, slurmdbd on MariaDB, slurmctld, slurmd, no systemd) with
# accounting, the `rescale` partition and deploy/slurm/job_submit.lua, plus test users burstuser_a
# (account physics) and burstuser_b (account chemistry). Run as root.
# Idempotent: a second run reinstalls the config and restarts the daemons. Can be run or sourced.
#
#   bash .ci/slurm-setup.sh            # set up and start
#   SLURM_SETUP_SKIP_APT=1 bash ...    # don't touch apt (packages already there)

_slurm_setup() {
  set -euo pipefail
  local repo conf_dir=/etc/slurm log_dir=/var/log/slurm state_dir=/var/lib/slurm
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

  _say() { printf 'slurm-setup: %s\n' "$*"; }
  _die() {
    printf 'slurm-setup: FAILED: %s\n' "$*" >&2
    local f
    for f in "$log_dir"/slurmdbd.log "$log_dir"/slurmctld.log "$log_dir"/slurmd.log /var/log/munge/munged.log; do
      [ -f "$f" ] && { printf '== tail %s\n' "$f" >&2; tail -n 40 "$f" >&2; }
    done
    return 1
  }

  if [ "$(id -u)" -ne 0 ]; then
    _die "must run as root"
    return 1
  fi

  # Packages. job_submit_lua.so ships in slurm-wlm-basic-plugins (a dependency of slurmctld), which
  # pulls liblua5.1-0 itself. libfaketime: the sreport test runs slurmdbd an hour ahead for its roll-up.
  local need=()
  local pkg
  for pkg in slurmctld slurmd slurm-client munge slurm-wlm-basic-plugins slurmdbd mariadb-server libfaketime; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
  if [ "${#need[@]}" -gt 0 ] && [ -z "${SLURM_SETUP_SKIP_APT:-}" ]; then
    _say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    _say "packages present"
  fi
  [ -f /usr/lib/x86_64-linux-gnu/slurm-wlm/job_submit_lua.so ] || _die "job_submit_lua.so missing"

  # Munge key (the package's postinst usually made one).
  install -d -o munge -g munge -m 0700 /etc/munge
  install -d -o munge -g munge -m 0711 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    _say "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key

  # Test users: ordinary accounts with home directories.
  local user
  for user in burstuser_a burstuser_b; do
    id "$user" >/dev/null 2>&1 || { useradd --create-home --shell /bin/bash "$user"; _say "created user $user"; }
  done

  # Config for one node holding both partitions.
  local node cpus mem
  node="$(hostname -s)"
  cpus="$(nproc)"
  mem="$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')"
  install -d -m 0755 "$conf_dir"
  install -d -o slurm -g slurm -m 0755 "$log_dir" "$state_dir" "$state_dir/slurmctld" "$state_dir/slurmd"
  cat >"$conf_dir/slurm.conf" <<EOF
# Written by .ci/slurm-setup.sh: a one-node test cluster.
ClusterName=burstci
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state_dir/slurmctld
SlurmdSpoolDir=$state_dir/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes by parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Accounting (docs/accounting.md): slurmdbd, Comment kept in sacct, cloud cores as a tracked resource,
# associations and their limits enforced.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
AccountingStorageTRES=license/rescale_cores
AccountingStorageEnforce=associations,limits,safe
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
KillWait=10
MinJobAge=30
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
# burst-agent: see deploy/slurm/slurm.conf.snippet
JobSubmitPlugins=lua
Epilog=$conf_dir/burst-epilog.sh
GresTypes=gpu
Licenses=rescale_cores:1000
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
# Relays are light: many share a core (memory is still reserved per relay).
PartitionName=rescale Nodes=$node Default=NO MaxTime=INFINITE OverSubscribe=FORCE:16 State=UP
EOF
  install -m 0644 "$repo/deploy/slurm/job_submit.lua" "$conf_dir/job_submit.lua"
  install -m 0755 "$repo/deploy/slurm/epilog.sh" "$conf_dir/burst-epilog.sh"
  _say "wrote $conf_dir/slurm.conf (node $node, $cpus cpus, ${mem} MB) and $conf_dir/job_submit.lua"

  # (Re)start the daemons: pid files name only processes we started earlier.
  local daemon pid
  for daemon in slurmd slurmctld slurmdbd; do
    pid="$(cat "/run/$daemon.pid" 2>/dev/null || true)"
    # Only a live process of that name: a stale pid file may name someone else's process now.
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$daemon" ]; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    _say "starting munged"
    runuser -u munge -- /usr/sbin/munged || _die "munged did not start"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || _die "munge does not work"
  fi
  _accounting "$conf_dir" "$log_dir" || _die "accounting (mariadb, slurmdbd) did not start"
  _say "starting slurmctld and slurmd"
  /usr/sbin/slurmctld -i || _die "slurmctld did not start"
  /usr/sbin/slurmd || _die "slurmd did not start"

  local state=""
  for _ in $(seq 120); do
    state="$(sinfo -h -n "$node" -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in idle | mix | alloc) break ;; esac
    if [ "$state" = "down" ] || [ "$state" = "drain" ] || [ "$state" = "unk" ]; then
      scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  case "$state" in
    idle | mix | alloc) _say "node $node is $state; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')" ;;
    *) _die "node $node never became idle (state: '${state:-none}')" ;;
  esac
}

# MariaDB (started by hand: no systemd here), the accounting database, slurmdbd, and the cluster's
# accounts and users. Idempotent: an existing database, cluster or association is kept.
_accounting() {
  local conf_dir=$1 log_dir=$2
  if ! mysqladmin ping >/dev/null 2>&1; then
    _say "starting mariadb"
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql >/dev/null
    (setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >>/var/log/mysql-ci.log 2>&1 &)
    for _ in $(seq 150); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
    mysqladmin ping >/dev/null 2>&1 || return 1
  fi
  mysql -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-ci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
  cat >"$conf_dir/slurmdbd.conf" <<EOF
# Written by .ci/slurm-setup.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$log_dir/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$conf_dir/slurmdbd.conf"
  chmod 0600 "$conf_dir/slurmdbd.conf"
  _say "starting slurmdbd"
  /usr/sbin/slurmdbd || return 1
  for _ in $(seq 150); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  sacctmgr -i add cluster burstci >/dev/null 2>&1 || true
  sacctmgr -i add account physics,chemistry cluster=burstci Description=ci Organization=ci >/dev/null 2>&1 || true
  sacctmgr -i add user burstuser_a account=physics >/dev/null 2>&1 || true
  sacctmgr -i add user burstuser_b account=chemistry >/dev/null 2>&1 || true
  sacctmgr -n -P list assoc format=account,user | grep -q '^chemistry|burstuser_b$' || return 1
  _say "accounting: $(sacctmgr -n -P list assoc format=account,user | tr '\n' ' ')"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _slurm_setup
else
  # Sourced: run in a subshell so `set -e` and failures don't end the caller's shell.
  (_slurm_setup)
fi
