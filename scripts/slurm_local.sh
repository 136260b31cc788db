#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for hydra/launcher=slurm without a real cluster (and for
# the tests). Run as root (Debian/Ubuntu):
#   bash scripts/slurm_local.sh start    # install slurm-wlm + munge if missing, start munged, slurmctld, slurmd
#   bash scripts/slurm_local.sh status   # the daemons' pids and `sinfo`
#   bash scripts/slurm_local.sh stop     # stop each daemon by its own pid
# One node named after `hostname -s` with all its CPUs in partition `debug`; no cgroups
# (proctrack/linuxproc, task/none), no accounting daemon (sacct fails: submitit bypasses it). State and
# logs live in $NLNET_SLURM_DIR (default /tmp/nlnet-slurm); the clients (sinfo, sbatch, srun) find the
# configuration through /etc/slurm/slurm.conf, written here unless another one is already there (then
# export SLURM_CONF=$NLNET_SLURM_DIR/slurm.conf). `start` on a running cluster only checks it.
set -euo pipefail

DIR="${NLNET_SLURM_DIR:-/tmp/nlnet-slurm}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
MARK="# written by nlnet scripts/slurm_local.sh"
HOST="$(hostname -s)"
PARTITION=debug

log() { echo "[slurm_local] $*" >&2; }
die() { echo "[slurm_local] error: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed, and installing them needs root"
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
  log "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$DIR/apt.log" 2>&1; then
    apt-get update -q >>"$DIR/apt.log" 2>&1 || die "apt-get update failed (see $DIR/apt.log)"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$DIR/apt.log" 2>&1 \
      || die "apt-get install slurm-wlm munge failed (see $DIR/apt.log)"
  fi
}

write_config() {
  local cpus mem_mb
  cpus="$(nproc)"
  mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
  cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=nlnet-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start cred_expire + 1 s after its requeue (default 121 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${NLNET_SLURMCTLD_PORT:-6817}
SlurmdPort=${NLNET_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  if [ ! -e "$ETC_CONF" ] || grep -qF "$MARK" "$ETC_CONF"; then
    mkdir -p "$(dirname "$ETC_CONF")"
    cp "$CONF" "$ETC_CONF"
  elif ! cmp -s "$CONF" "$ETC_CONF"; then
    log "$ETC_CONF is not ours and is left alone: export SLURM_CONF=$CONF for the clients"
  fi
}

start_munge() {
  pid_alive "$DIR/munged.pid" && return
  if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 700 "$DIR/munge"
  chmod 400 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start (see $DIR/log/munged.log)"
}

start_daemon() {  # name
  pid_alive "$DIR/$1.pid" && return
  SLURM_CONF="$CONF" "$1" -f "$CONF" || die "$1 did not start (see $DIR/log/$1.log)"
}

wait_idle() {
  local state=""
  for _ in $(seq 60); do
    state="$(SLURM_CONF="$CONF" sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1 || true)"
    case "$state" in
      idle|mix|alloc) log "node $HOST is $state (partition $PARTITION, $(nproc) CPUs; SLURM_CONF=$CONF)"; return ;;
      drain*|down*) SLURM_CONF="$CONF" scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  die "node $HOST is not idle after 60 s (sinfo: '${state}'; see $DIR/log/slurmctld.log and slurmd.log)"
}

stop_daemon() {  # name
  local pidfile="$DIR/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    install_packages
    if pid_alive "$DIR/munged.pid" && pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
      wait_idle
      exit 0
    fi
    write_config
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    wait_idle
    ;;
  stop)
    # the jobs' steps end with slurmd (proctrack/linuxproc kills what it tracks)
    SLURM_CONF="$CONF" scancel --user="$(id -un)" >/dev/null 2>&1 || true
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    if [ -f "$ETC_CONF" ] && grep -qF "$MARK" "$ETC_CONF"; then rm -f "$ETC_CONF"; fi
    log "stopped"
    ;;
  status)
    for name in munged slurmctld slurmd; do
      if pid_alive "$DIR/$name.pid"; then echo "$name: running (pid $(cat "$DIR/$name.pid"))"
      else echo "$name: not running"; fi
    done
    SLURM_CONF="$CONF" sinfo 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
