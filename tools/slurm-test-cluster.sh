#!/usr/bin/env bash
# A Slurm cluster for the test suite: munged, slurmctld and one slurmd per node, all on this
# machine, in a PID namespace of their own, with every file (configuration, munge key and
# socket, state, spool, logs) in DIR. Nothing is read from or written to /etc, /run or /var.
#
#   tools/slurm-test-cluster.sh start DIR    start the cluster, files in DIR
#   tools/slurm-test-cluster.sh stop DIR     cancel its jobs, stop it, then remove DIR
#   tools/slurm-test-cluster.sh status DIR   print DIR/nodes.tsv, the daemons and sinfo
#
# Nodes (name, CPUs, partition), each slurmd on a port of its own:
#   n1, n2      4 CPUs   partition "big"
#   n3, n4, n5  2 CPUs   partition "small" (the default)
# and partition "all" with every node (jobs of more than three nodes).
# Each node has RealMemory=1000 (MB), so that --mem-per-cpu is accepted.
#
# Clients use the cluster with SLURM_CONF=DIR/slurm.conf (and USER set).
#
# Environment:
#   SLURM_TEST_CLUSTER_PORT       slurmctld's port; slurmd nK listens on PORT+K (default 16817)
#   SLURM_TEST_CLUSTER_OWNER_PID  if set, a watchdog stops the cluster once this process is gone
#
# Needs root, unshare (PID namespaces) and Debian's slurmctld, slurmd, slurm-client and munge.
# Only 127.0.0.0/8 addresses are used (the daemons bind to their own address only). Only
# processes recorded in DIR (and their PID namespace) are killed.
set -euo pipefail

PORT="${SLURM_TEST_CLUSTER_PORT:-16817}"
NODES="n1 n2 n3 n4 n5"

die() { echo "slurm-test-cluster: $*" >&2; exit 1; }
. "$(dirname "$0")/processes.sh"

node_num() { echo "${1#n}"; }
# With the machine's name on a loopback address (Debian: 127.0.1.1 or 127.0.0.1), every daemon
# binds to that address only (NoInAddrAny: Slurm binds to what the hostname resolves to).
# Otherwise they listen on all addresses and are reached at 127.0.0.70-75.
HOST_ADDR=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
if [[ "$HOST_ADDR" == 127.* ]]; then BIND_LOOPBACK=1; else BIND_LOOPBACK=0; fi
ctld_addr() { if [ "$BIND_LOOPBACK" = 1 ]; then echo "$HOST_ADDR"; else echo 127.0.0.70; fi; }
node_addr() {
  if [ "$BIND_LOOPBACK" = 1 ]; then echo "$HOST_ADDR"; else echo "127.0.0.$((70 + $(node_num "$1")))"; fi
}
node_port() { echo "$((PORT + $(node_num "$1")))"; }
node_cpus() { case "$1" in n1|n2) echo 4 ;; *) echo 2 ;; esac; }
node_partition() { case "$1" in n1|n2) echo big ;; *) echo small ;; esac; }

# The client commands, pointed at this cluster.
sl() { local dir=$1; shift; SLURM_CONF="$dir/slurm.conf" USER="${USER:-root}" timeout 5 "$@"; }

cmd_stop() {
  local dir=$1 pids i jobs
  [ -d "$dir" ] || { echo "slurm-test-cluster: $dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  stop_watchdog "$dir"
  pids=$(namespaces_processes "$dir" | sort -un)
  if [ -n "$pids" ]; then
    # Cancel the jobs first, so that the controller does not keep them for the next start
    # (its state is in DIR and goes with it anyway); their processes die with the namespace.
    jobs=$(sl "$dir" squeue -h -o %i 2>/dev/null || true)
    [ -z "$jobs" ] || sl "$dir" scancel $jobs 2>/dev/null || true
    # SIGTERM to the namespace's init: it stops the daemons, waits for them and exits; the
    # kernel then kills whatever is left in the namespace (job steps, slurmstepd).
    term_namespace_inits "$dir" "$pids"
    end_processes namespaces_processes "$dir" 50
  fi
  rm -rf "$dir"
  echo "slurm-test-cluster: stopped the cluster of $dir"
}

cmd_status() {
  local dir=$1 p
  [ -f "$dir/nodes.tsv" ] || die "no cluster recorded in $dir"
  dir=$(cd "$dir" && pwd -P)
  cat "$dir/nodes.tsv"
  echo "processes:"
  for p in $(namespaces_processes "$dir" | sort -un); do
    echo "  $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"
  done
  sl "$dir" sinfo -N -h -o '%N %P %c %t' || echo "sinfo failed"
}

write_config() {
  local dir=$1 n
  cat >"$dir/slurm.conf" <<EOF
# Slurm cluster of the parallelly test suite (tools/slurm-test-cluster.sh)
ClusterName=ptest
SlurmctldHost=$(hostname)($(ctld_addr))
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
$([ "$BIND_LOOPBACK" = 1 ] && echo "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny")
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/slurmctld.pidfile
SlurmctldLogFile=$dir/slurmctld.log
SlurmdPidFile=$dir/slurmd-%n.pidfile
SlurmdSpoolDir=$dir/spool-%n
SlurmdLogFile=$dir/slurmd-%n.log
SlurmdParameters=config_overrides
TmpFS=$dir/tmp
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=60
SrunPortRange=$((PORT + 100))-$((PORT + 400))
EOF
  for n in $NODES; do
    echo "NodeName=$n NodeAddr=$(node_addr "$n") NodeHostname=$(hostname) Port=$(node_port "$n") CPUs=$(node_cpus "$n") RealMemory=1000 State=UNKNOWN" \
      >>"$dir/slurm.conf"
  done
  cat >>"$dir/slurm.conf" <<EOF
PartitionName=small Nodes=n3,n4,n5 Default=YES MaxTime=INFINITE State=UP
PartitionName=big Nodes=n1,n2 MaxTime=INFINITE State=UP
PartitionName=all Nodes=n1,n2,n3,n4,n5 MaxTime=INFINITE State=UP
EOF
}

# The namespace's init (PID 1 inside): starts the daemons, waits; on SIGTERM stops them.
write_init() {
  local dir=$1 n
  {
    echo '#!/usr/bin/env bash'
    echo "# init of the Slurm test cluster in $dir"
    echo "export SLURM_CONF='$dir/slurm.conf'"
    echo 'pids=""'
    echo 'stop() { [ -z "$pids" ] || kill -TERM $pids 2>/dev/null; wait; exit 0; }'
    echo 'trap stop TERM INT'
    echo "/usr/sbin/munged -F --force --socket='$dir/munge/munge.socket' --key-file='$dir/munge/munge.key' --pid-file='$dir/munge/munged.pid' --log-file='$dir/munge/munged.log' --seed-file='$dir/munge/munged.seed' 2>>'$dir/munge/munged.out' &"
    echo 'pids="$pids $!"'
    echo "for i in \$(seq 100); do [ -S '$dir/munge/munge.socket' ] && break; sleep 0.05; done"
    echo "/usr/sbin/slurmctld -D -i -f '$dir/slurm.conf' >>'$dir/slurmctld.out' 2>&1 &"
    echo 'pids="$pids $!"'
    for n in $NODES; do
      echo "/usr/sbin/slurmd -D -N $n -f '$dir/slurm.conf' >>'$dir/slurmd-$n.out' 2>&1 &"
      echo 'pids="$pids $!"'
    done
    echo 'echo "$pids" >'"'$dir/daemons.nspid'"
    # `wait` returns early on a trapped signal; loop until every daemon is gone.
    echo 'while [ -n "$(jobs -pr)" ]; do wait; done'
  } >"$dir/init.sh"
}

cmd_start() {
  local dir=$1 n pid t0 t1 ok
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd runs jobs as any user)"
  for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sinfo /usr/bin/srun; do
    [ -x "$b" ] || die "$b not found (install slurmctld slurmd slurm-client munge)"
  done
  command -v unshare >/dev/null || die "unshare not found (util-linux)"
  unshare --pid --fork --mount-proc true 2>/dev/null || die "unshare --pid refused here"
  t0=$(date +%s.%N)
  if [ -f "$dir/unshare.pid" ]; then cmd_stop "$dir" >/dev/null; fi
  ! port_open "$(ctld_addr)" "$PORT" || die "127.0.0.70:$PORT is already in use (a cluster of another run?)"
  for n in $NODES; do
    ! port_open "$(node_addr "$n")" "$(node_port "$n")" ||
      die "$(node_addr "$n"):$(node_port "$n") is already in use"
  done
  dir=$(abs_dir "$dir")
  chmod 700 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/tmp" "$dir/jobs"
  for n in $NODES; do mkdir -p "$dir/spool-$n"; done
  # A munge key of this run only: the cluster shares nothing with a system munged.
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 600 "$dir/munge/munge.key"
  write_config "$dir"
  write_init "$dir"
  printf 'name\taddress\tport\tcpus\tpartition\n' >"$dir/nodes.tsv"
  for n in $NODES; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$(node_addr "$n")" "$(node_port "$n")" "$(node_cpus "$n")" \
      "$(node_partition "$n")" >>"$dir/nodes.tsv"
  done

  # setsid + nohup: the cluster outlives this script and the caller's process group.
  start_namespaces "$dir" "" "$dir/init.sh" ||
    { cmd_stop "$dir" >&2 || true; die "no namespace init under unshare $(cat "$dir/unshare.pid")"; }
  pid=$(cat "$dir/unshare.pid")
  if [ -n "${SLURM_TEST_CLUSTER_OWNER_PID:-}" ]; then
    start_watchdog "$dir" "$SLURM_TEST_CLUSTER_OWNER_PID" "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")"
  fi

  # Ready when every node is idle (up to 30 s).
  ok=0
  local deadline=$(($(date +%s) + 30))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || break
    if [ "$(sl "$dir" sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = 5 ]; then ok=1; break; fi
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    echo "slurm-test-cluster: the cluster in $dir did not come up; its logs:" >&2
    tail -n 20 "$dir"/*.log "$dir"/*.out "$dir"/munge/*.out >&2 2>/dev/null || true
    sl "$dir" sinfo -N >&2 2>&1 || true
    cmd_stop "$dir" >&2 || true
    exit 1
  fi
  t1=$(date +%s.%N)
  echo "slurm-test-cluster: 5 nodes up in $dir (port $PORT, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)"
}

case "${1:-}" in
  start)  [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
  stop)   [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  watch)  [ $# -eq 3 ] || die "usage: $0 watch DIR OWNER_PID"; watch_owner "$2" "$3" cmd_stop ;;
  *) die "usage: $0 start DIR | stop DIR | status DIR" ;;
esac
