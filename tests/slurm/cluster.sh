#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests (and by hand):
#
#   tests/slurm/cluster.sh start DIR   install slurm-wlm + munge if absent (apt-get, as root),
#                                      write DIR/slurm.conf, start munged, slurmctld, slurmd;
#                                      prints SLURM_CONF=DIR/slurm.conf when the node is idle
#   tests/slurm/cluster.sh stop DIR    cancel every job, stop the three daemons, check that
#                                      none of them (nor a job step) is left running
#
# Everything lives in DIR: config, munge key and socket, state, spool, logs and pid files.
# Ports are free ones picked at start, so two clusters (two test runs) do not meet.
# Nothing here touches the system's own /etc/slurm or /etc/munge; the daemons run as root
# (SlurmUser=root), no systemd and no cgroups are needed (proctrack/linuxproc, task/none).
# Exit codes: 0 ok, 3 the packages cannot be installed (the tests skip, naming why),
# 1 anything else (the daemons' logs in DIR say why).
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)

die() { echo "cluster.sh: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "cluster.sh: slurm-wlm is not installed and installing it needs root" \
         "(apt-get install ${PACKAGES[*]})" >&2
    exit 3
  fi
  if ! command -v apt-get >/dev/null; then
    echo "cluster.sh: slurm-wlm is not installed and there is no apt-get here" >&2
    exit 3
  fi
  echo "cluster.sh: installing ${PACKAGES[*]} with apt-get" >&2
  # The packages' own service starts are refused in a container (policy-rc.d) or harmless:
  # this script starts its own daemons with its own config.
  if ! { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2; }; then
    echo "cluster.sh: apt-get install ${PACKAGES[*]} failed (see above)" >&2
    exit 3
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
  local dir=$1 node=$2 host
  local ctld_port slurmd_port
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$(free_port)
  cat > "$dir/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: one node (this machine), state in $dir.
ClusterName=dettui-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (120 s
# by default): 10 s keeps the requeue test short.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# A requeued job may start again cred_expire seconds later: look for it every 2 s, not 60.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=300
# A job's USR1 --signal lead may be anything up to the time limit.
NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local dir node
  dir=$(realpath -m "$1")
  node=dettui-node
  install_packages
  mkdir -p "$dir"/{munge,state,spool}
  chmod 700 "$dir" "$dir/munge"
  write_config "$dir" "$node"
  export SLURM_CONF=$dir/slurm.conf

  # munged: its own key, socket, pid and log in DIR (--force: it runs as root here).
  [ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key" \
    --bits=1024 2>/dev/null || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 \
    count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" \
    || die "munged did not start: $(tail -n 5 "$dir/munge/munged.log" 2>/dev/null)"
  echo "cluster.sh: munged pid $(cat "$dir/munge/munged.pid")" >&2

  # Both fork into the background: a bad config shows as no pid file / no process.
  slurmctld -f "$SLURM_CONF" -c || true
  wait_daemon "$dir" slurmctld
  slurmd -f "$SLURM_CONF" -N "$node" || true
  wait_daemon "$dir" slurmd

  local state=""
  for _ in $(seq 1 150); do
    state=$(timeout 5 sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  if [ "$state" != idle ]; then
    echo "cluster.sh: node $node is '${state:-unreachable}', not idle after 30 s" >&2
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    (stop "$dir") || true
    exit 1
  fi
  echo "cluster.sh: slurmctld pid $(cat "$dir/slurmctld.pid"), slurmd pid" \
       "$(cat "$dir/slurmd.pid"), node $node idle" >&2
  echo "SLURM_CONF=$SLURM_CONF"
}

wait_daemon() {  # DIR NAME: its pid file names a live process within 10 s, or stop all
  local dir=$1 name=$2
  for _ in $(seq 1 50); do
    pid_of "$dir/$name.pid" >/dev/null && return 0
    sleep 0.2
  done
  echo "cluster.sh: $name did not start; the end of $dir/$name.log:" >&2
  tail -n 20 "$dir/$name.log" >&2 || true
  (stop "$dir") >&2 || true
  exit 1
}

pid_of() {  # a daemon's pid from its pid file, if that process still runs
  local file=$1
  [ -f "$file" ] || return 1
  local pid
  pid=$(cat "$file")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

step_pids() {  # slurmstepd processes of this cluster (they name its spool folder's jobs)
  local dir=$1 pid
  for pid in $(pgrep -x slurmstepd || true); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$dir/slurm.conf"
    then echo "$pid"; fi
  done
}

stop() {
  local dir
  dir=$(realpath -m "$1")
  [ -f "$dir/slurm.conf" ] || die "no cluster in $dir"
  export SLURM_CONF=$dir/slurm.conf
  if pid_of "$dir/slurmctld.pid" >/dev/null; then
    timeout 10 scancel --quiet --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 200); do  # running jobs get KillWait to stop; wait for them
      [ -z "$(timeout 5 squeue -h -t R,CG,S -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
    timeout 10 scontrol shutdown 2>/dev/null || true
  fi
  local name pid left=""
  for name in slurmd slurmctld munge/munged; do
    # scontrol shutdown stops slurmctld and slurmd; anything still there gets SIGTERM
    for i in $(seq 1 100); do
      pid=$(pid_of "$dir/$name.pid") || break
      { [ "$name" = munge/munged ] || [ "$i" = 50 ]; } && kill "$pid" 2>/dev/null
      sleep 0.1
    done
    if pid=$(pid_of "$dir/$name.pid"); then
      kill -KILL "$pid" 2>/dev/null || true
      left+=" ${name#munge/} ($pid, killed)"
    fi
  done
  for pid in $(step_pids "$dir"); do
    kill -KILL "$pid" 2>/dev/null || true
    left+=" slurmstepd ($pid, killed)"
  done
  if [ -n "$left" ]; then
    echo "cluster.sh: had to kill:$left" >&2
    exit 1
  fi
  echo "cluster.sh: stopped; nothing left running" >&2
}

case "${1:-}" in
  start) [ $# = 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  install) install_packages ;;
  *) echo "usage: $0 start DIR | stop DIR | install" >&2; exit 2 ;;
esac
