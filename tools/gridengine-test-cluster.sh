#!/usr/bin/env bash
# A Grid Engine cluster for the test suite: sge_qmaster and one sge_execd on this machine, in a
# PID namespace of their own, with every file (SGE_ROOT with its cell, spool, job spools, logs)
# in DIR. Nothing is written to /etc, /run or /var; Debian's packages are only read.
#
#   tools/gridengine-test-cluster.sh start DIR    start the cluster, files in DIR
#   tools/gridengine-test-cluster.sh stop DIR     delete its jobs, stop it, then remove DIR
#   tools/gridengine-test-cluster.sh status DIR   print DIR/env.sh, the daemons, qhost, qstat
#
# The cluster: this machine's name as the only host (master, submit and exec host), a queue
# all.q with SLOTS slots, a parallel environment `smp` (SLOTS slots, $fill_up, control_slaves
# TRUE so that `qrsh -inherit` works inside a job, job_is_first_task FALSE). root's jobs are
# allowed (min_uid 0, min_gid 0). The scheduler runs every second.
#
# Clients use the cluster with the variables of DIR/env.sh (SGE_ROOT, SGE_CELL,
# SGE_QMASTER_PORT, SGE_EXECD_PORT) and /usr/lib/gridengine on the PATH.
#
# Environment:
#   GRIDENGINE_TEST_CLUSTER_PORT       qmaster's port; execd listens on PORT+1 (default 26444)
#   GRIDENGINE_TEST_CLUSTER_SLOTS      slots of the host, queue and PE (default 8)
#   GRIDENGINE_TEST_CLUSTER_OWNER_PID  if set, a watchdog stops the cluster once it is gone
#
# Needs root, unshare (PID namespaces) and Debian's gridengine-master, gridengine-exec and
# gridengine-client (8.1.9). Only processes recorded in DIR (and their PID namespace) are killed.
set -euo pipefail

PORT="${GRIDENGINE_TEST_CLUSTER_PORT:-26444}"
SLOTS="${GRIDENGINE_TEST_CLUSTER_SLOTS:-8}"
GE_BIN=/usr/lib/gridengine
HOST=$(hostname)

die() { echo "gridengine-test-cluster: $*" >&2; exit 1; }
. "$(dirname "$0")/processes.sh"

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# True if PID runs and its command line mentions DIR (guards against PID reuse).
pid_is_ours() {
  local pid=$1 dir=$2 cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$dir"* ]]
}

# The unshare process and everything in its namespace (searched only while unshare runs).
cluster_processes() {
  local dir=$1 pid
  pid=$(cat "$dir/unshare.pid" 2>/dev/null || true)
  pid_is_ours "$pid" "$dir" || return 0
  echo "$pid"
  pidns_members "$(cat "$dir/pidns" 2>/dev/null || true)"
}

# A client command, pointed at this cluster, with a timeout.
ge() {
  local dir=$1; shift
  (. "$dir/env.sh" && PATH="$GE_BIN:$PATH" timeout 10 "$@")
}

cmd_stop() {
  local dir=$1 pids init
  [ -d "$dir" ] || { echo "gridengine-test-cluster: $dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  if [ -f "$dir/watchdog.pid" ]; then
    local w; w=$(cat "$dir/watchdog.pid")
    if [ "$w" != "$$" ] && [ "$w" != "${GRIDENGINE_TEST_CLUSTER_WATCHDOG:-}" ] && pid_is_ours "$w" "$dir"; then
      kill -TERM "$w" 2>/dev/null || true
    fi
  fi
  pids=$(cluster_processes "$dir" | sort -un)
  if [ -n "$pids" ]; then
    # SIGTERM to the namespace's init: it stops the daemons and exits; the kernel then kills
    # whatever is left in the namespace (shepherds, jobs, their qrsh tasks). The jobs are
    # not deleted first: the spool goes with DIR.
    init=$(cat "$dir/init.hostpid" 2>/dev/null || true)
    if [[ "$init" =~ ^[0-9]+$ ]] && echo "$pids" | grep -qx "$init"; then
      kill -TERM "$init" 2>/dev/null || true
    fi
    # qmaster takes ~5 s to shut down cleanly; its state goes with DIR, so 1 s, then SIGKILL.
    end_processes cluster_processes "$dir" 10
  fi
  rm -rf "$dir"
  echo "gridengine-test-cluster: stopped the cluster of $dir"
}

cmd_status() {
  local dir=$1 p
  [ -f "$dir/env.sh" ] || die "no cluster recorded in $dir"
  dir=$(cd "$dir" && pwd -P)
  cat "$dir/env.sh"
  echo "processes:"
  for p in $(cluster_processes "$dir" | sort -un); do
    echo "  $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"
  done
  ge "$dir" qhost || echo "qhost failed"
  ge "$dir" qstat -f -u '*' || echo "qstat failed"
}

# Stop the cluster of DIR once OWNER is gone (runs detached).
cmd_watch() {
  local dir=$1 owner=$2 pid
  sleep 1
  pid=$(cat "$dir/unshare.pid" 2>/dev/null || true)
  while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
  if [ -d "$dir" ]; then
    GRIDENGINE_TEST_CLUSTER_WATCHDOG=$$ cmd_stop "$dir" >/dev/null 2>&1
  elif [[ "$pid" =~ ^[0-9]+$ ]]; then
    # DIR is gone: SIGKILL to unshare takes its child, the namespace's init, and with it
    # the whole namespace (--kill-child).
    kill -KILL "$pid" 2>/dev/null || true
  fi
  return 0
}

# SGE_ROOT in DIR: the package's programs by symlink, a cell `default` of our own.
write_root() {
  local dir=$1 root=$1/root common=$1/root/default/common x
  mkdir -p "$common" "$dir/spool/qmaster/job_scripts" "$dir/spool/execd" "$dir/spooldb"
  for x in bin lib util utilbin; do ln -s "/var/lib/gridengine/$x" "$root/$x"; done
  # The daemons run as root (admin_user none): the spool is DIR's.
  cat >"$common/bootstrap" <<EOF
admin_user              none
default_domain          none
ignore_fqdn             true
spooling_method         berkeleydb
spooling_lib            libspoolb
spooling_params         $dir/spooldb
binary_path             /usr/sbin
qmaster_spool_dir       $dir/spool/qmaster
security_mode           none
listener_threads        2
worker_threads          2
scheduler_threads       1
EOF
  echo "$HOST" >"$common/act_qmaster"
  # qmaster names a client by its address: with this machine's name on 127.0.0.1 that is
  # "localhost", which it refuses as not the client's own name unless the two are aliases.
  echo "$HOST localhost" >"$common/host_aliases"
  cat >"$dir/env.sh" <<EOF
export SGE_ROOT='$root'
export SGE_CELL=default
export SGE_QMASTER_PORT=$PORT
export SGE_EXECD_PORT=$((PORT + 1))
EOF
  # The global configuration: jobs of root allowed, loads reported every 2 s, no mail.
  sed -e "s|^execd_spool_dir.*|execd_spool_dir $dir/spool/execd|" \
      -e 's/^min_uid.*/min_uid 0/' -e 's/^min_gid.*/min_gid 0/' \
      -e 's|^mailer.*|mailer /bin/true|' -e 's/^load_report_time.*/load_report_time 00:00:02/' \
      /usr/share/gridengine/default-configuration >"$dir/global.conf"
  (
    . "$dir/env.sh"
    "$GE_BIN/spoolinit" berkeleydb libspoolb "$dir/spooldb" init
    "$GE_BIN/spooldefaults" configuration "$dir/global.conf"
    "$GE_BIN/spooldefaults" complexes /usr/share/gridengine/util/resources/centry
    "$GE_BIN/spooldefaults" usersets /usr/share/gridengine/util/resources/usersets
    "$GE_BIN/spooldefaults" managers root
  ) >"$dir/spoolinit.out" 2>&1 || { cat "$dir/spoolinit.out" >&2; die "could not initialise the spool in $dir"; }
}

# The namespace's init (PID 1 inside): starts qmaster, and execd once DIR/execd.go exists
# (after the host is an exec host); on SIGTERM stops them. SGE_ND: the daemons stay in the
# foreground, children of init.
write_init() {
  local dir=$1
  cat >"$dir/init.sh" <<EOF
#!/usr/bin/env bash
# init of the Grid Engine test cluster in $dir
. '$dir/env.sh'
export SGE_ND=1
cd '$dir'
pids=""
stop() { [ -z "\$pids" ] || kill -TERM \$pids 2>/dev/null; wait; exit 0; }
trap stop TERM INT
/usr/sbin/sge_qmaster >>'$dir/qmaster.out' 2>&1 &
pids="\$pids \$!"
for i in \$(seq 600); do [ -e '$dir/execd.go' ] && break; sleep 0.05; done
/usr/sbin/sge_execd >>'$dir/execd.out' 2>&1 &
pids="\$pids \$!"
echo "\$pids" >'$dir/daemons.nspid'
while [ -n "\$(jobs -pr)" ]; do wait; done
EOF
}

write_objects() {
  local dir=$1
  cat >"$dir/exechost.conf" <<EOF
hostname $HOST
load_scaling NONE
complex_values NONE
user_lists NONE
xuser_lists NONE
projects NONE
xprojects NONE
usage_scaling NONE
report_variables NONE
EOF
  cat >"$dir/pe.conf" <<EOF
pe_name            smp
slots              $SLOTS
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$fill_up
control_slaves     TRUE
job_is_first_task  FALSE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
}

# Wait until `ge DIR ARGS` succeeds (up to TRIES x 0.1 s).
wait_for() {
  local dir=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do
    kill -0 "$(cat "$dir/unshare.pid")" 2>/dev/null || return 1
    ge "$dir" "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

fail_start() {
  local dir=$1; shift
  echo "gridengine-test-cluster: $*; its logs:" >&2
  tail -n 20 "$dir"/*.out "$dir"/spool/qmaster/messages "$dir"/spool/execd/*/messages >&2 2>/dev/null || true
  cmd_stop "$dir" >&2 || true
  exit 1
}

cmd_start() {
  local dir=$1 pid init t0 t1
  [ "$(id -u)" = 0 ] || die "must run as root (execd runs jobs as any user)"
  for b in /usr/sbin/sge_qmaster /usr/sbin/sge_execd "$GE_BIN/qconf" "$GE_BIN/qsub" "$GE_BIN/qrsh" \
           "$GE_BIN/spoolinit" /usr/share/gridengine/default-configuration; do
    [ -e "$b" ] || die "$b not found (install gridengine-master gridengine-exec gridengine-client)"
  done
  command -v unshare >/dev/null || die "unshare not found (util-linux)"
  unshare --pid --fork --mount-proc true 2>/dev/null || die "unshare --pid refused here"
  t0=$(date +%s.%N)
  if [ -f "$dir/unshare.pid" ]; then cmd_stop "$dir" >/dev/null; fi
  ! port_open "$PORT" || die "port $PORT is already in use (a cluster of another run?)"
  ! port_open "$((PORT + 1))" || die "port $((PORT + 1)) is already in use"
  dir=$(abs_dir "$dir")
  chmod 700 "$dir"
  write_root "$dir"
  write_init "$dir"
  write_objects "$dir"

  setsid nohup unshare --pid --fork --mount-proc --kill-child bash "$dir/init.sh" \
    </dev/null >>"$dir/init.out" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/unshare.pid"
  init=""
  for _ in $(seq 100); do
    init=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' | head -n 1 || true)
    [ -n "$init" ] && break
    sleep 0.02
  done
  [ -n "$init" ] || { cmd_stop "$dir" >&2 || true; die "no namespace init under unshare $pid"; }
  echo "$init" >"$dir/init.hostpid"
  stat -L -c %i "/proc/$init/ns/pid" >"$dir/pidns"

  if [ -n "${GRIDENGINE_TEST_CLUSTER_OWNER_PID:-}" ]; then
    setsid nohup bash "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")" watch "$dir" \
      "$GRIDENGINE_TEST_CLUSTER_OWNER_PID" </dev/null >/dev/null 2>&1 &
    echo "$!" >"$dir/watchdog.pid"
  fi

  wait_for "$dir" 200 qconf -sh || fail_start "$dir" "qmaster did not answer within 20 s"
  {
    ge "$dir" qconf -Ae "$dir/exechost.conf" &&
    ge "$dir" qconf -as "$HOST" &&
    ge "$dir" qconf -Ap "$dir/pe.conf" &&
    ge "$dir" qconf -sq >"$dir/queue.template" &&
    sed -e 's/^qname .*/qname all.q/' -e "s/^hostlist .*/hostlist $HOST/" \
        -e 's/^pe_list .*/pe_list smp/' -e "s/^slots .*/slots $SLOTS/" \
        -e 's/^load_thresholds .*/load_thresholds NONE/' -e 's|^shell .*|shell /bin/sh|' \
        "$dir/queue.template" >"$dir/queue.conf" &&
    ge "$dir" qconf -Aq "$dir/queue.conf" &&
    ge "$dir" qconf -ssconf >"$dir/sched.template" &&
    sed -e 's/^schedule_interval .*/schedule_interval 0:0:1/' \
        -e 's/^flush_submit_sec .*/flush_submit_sec 1/' -e 's/^flush_finish_sec .*/flush_finish_sec 1/' \
        -e 's/^job_load_adjustments .*/job_load_adjustments NONE/' \
        -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time 0:0:0/' \
        "$dir/sched.template" >"$dir/sched.conf" &&
    ge "$dir" qconf -Msconf "$dir/sched.conf"
  } >"$dir/configure.out" 2>&1 || { cat "$dir/configure.out" >&2; fail_start "$dir" "configuring the cluster failed"; }
  touch "$dir/execd.go"

  # Ready when the queue instance of this host is open (execd reported its load).
  local ok=0 deadline=$(($(date +%s) + 30)) state
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || break
    state=$(ge "$dir" qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1 == q { print (NF >= 6 ? $6 : "ok") }' || true)
    if [ "$state" = ok ]; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || fail_start "$dir" "the exec host did not come up within 30 s"
  t1=$(date +%s.%N)
  echo "gridengine-test-cluster: host $HOST up in $dir (port $PORT, $SLOTS slots, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)"
}

case "${1:-}" in
  start)  [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
  stop)   [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  watch)  [ $# -eq 3 ] || die "usage: $0 watch DIR OWNER_PID"; cmd_watch "$2" "$3" ;;
  *) die "usage: $0 start DIR | stop DIR | status DIR" ;;
esac
