#!/usr/bin/env bash
# A Grid Engine cluster for the test suite: sge_qmaster and an sge_execd on this machine, in a
# PID namespace of their own, and more exec hosts, each an sge_execd in a namespace host of its
# own (below), with every file (SGE_ROOT with its cell, spool, job spools, logs) in DIR.
# Nothing is written to /etc, /run or /var; Debian's packages are only read.
#
#   tools/gridengine-test-cluster.sh start DIR    start the cluster, files in DIR
#   tools/gridengine-test-cluster.sh stop DIR     delete its jobs, stop it, then remove DIR
#   tools/gridengine-test-cluster.sh status DIR   print DIR/env.sh, the daemons, qhost, qstat
#   tools/gridengine-test-cluster.sh start-execd DIR HOST   start exec host HOST's execd again
#                                                 (after a test stopped it by its PID)
#
# The cluster: this machine's name as master, submit and exec host; exec hosts sgehost1,
# sgehost2, ... (HOST_SLOTS slots each); a queue all.q on this machine only, with SLOTS slots
# (jobs that do not ask for span.q run here, as on a one-host cluster); a queue span.q on every
# host, this machine first (queue_sort_method seqno) with 1 slot, for jobs whose parallel
# environment spans hosts (`qsub -q span.q -masterq span.q@HOST -pe smp N`); a parallel
# environment `smp` in both ($fill_up, control_slaves TRUE so that `qrsh -inherit` works inside
# a job, job_is_first_task FALSE). root's jobs are allowed (min_uid 0, min_gid 0). The
# scheduler runs every second.
#
# An exec host sgehostK is a namespace host: its own UTS (host name), PID, mount and network
# namespace, with a veth pair to this machine's network namespace (this machine's end
# 198.18.X.4K-3, the host's 198.18.X.4K-2; X from the port, in the benchmarking range
# 198.18.0.0/15), an /etc/hosts of its own (bind-mounted) that names the two ends, and a /tmp
# of its own (tmpfs; DIR and GRIDENGINE_TEST_CLUSTER_SHARED stay shared, as a cluster's
# shared file systems are). Not a
# loopback address: in one network namespace every connection to a local address leaves
# from 127.0.0.1, and qmaster, which names a client by its address, would take every exec host
# for one. The master's namespace sees an /etc/hosts with the exec hosts' names added.
#
# Clients use the cluster with the variables of DIR/env.sh (SGE_ROOT, SGE_CELL,
# SGE_QMASTER_PORT, SGE_EXECD_PORT) and /usr/lib/gridengine on the PATH.
#
# Environment:
#   GRIDENGINE_TEST_CLUSTER_PORT       qmaster's port; execd listens on PORT+1 (default 26444)
#   GRIDENGINE_TEST_CLUSTER_SLOTS      slots of this machine in all.q (default 8)
#   GRIDENGINE_TEST_CLUSTER_HOSTS      number of exec hosts besides this machine (default 2; 0-8)
#   GRIDENGINE_TEST_CLUSTER_HOST_SLOTS slots of each of them in span.q (default 2)
#   GRIDENGINE_TEST_CLUSTER_OWNER_PID  if set, a watchdog stops the cluster once it is gone
#   GRIDENGINE_TEST_CLUSTER_SHARED     paths (colon-separated) that the exec hosts see as this
#                                      machine does although under /tmp (each host has a /tmp
#                                      of its own): e.g. R's library and the jobs' directory
#
# Needs root, unshare (PID namespaces; network namespaces and `ip` with veth for exec hosts)
# and Debian's gridengine-master, gridengine-exec and gridengine-client (8.1.9). Only
# processes recorded in DIR (and their PID namespaces) are killed.
set -euo pipefail

PORT="${GRIDENGINE_TEST_CLUSTER_PORT:-26444}"
SLOTS="${GRIDENGINE_TEST_CLUSTER_SLOTS:-8}"
NHOSTS="${GRIDENGINE_TEST_CLUSTER_HOSTS:-2}"
HOST_SLOTS="${GRIDENGINE_TEST_CLUSTER_HOST_SLOTS:-2}"
SPAN_SLOTS=1
GE_BIN=/usr/lib/gridengine
HOST=$(hostname)

die() { echo "gridengine-test-cluster: $*" >&2; exit 1; }
. "$(dirname "$0")/processes.sh"

# Exec host K (1..NHOSTS): its name, its address and this machine's end of its veth pair, and
# the names of the pair's ends (at most 15 characters).
exec_hosts() { local k; for k in $(seq "$NHOSTS"); do echo "sgehost$k"; done; }
host_num() { echo "${1#sgehost}"; }
net_prefix() { echo "198.$((18 + PORT / 256 % 2)).$((PORT % 256))"; }
host_addr() { echo "$(net_prefix).$((4 * $(host_num "$1") - 2))"; }
peer_addr() { echo "$(net_prefix).$((4 * $(host_num "$1") - 3))"; }
veth_outer() { echo "sge${PORT}h$(host_num "$1")"; }
veth_inner() { echo "sge${PORT}n$(host_num "$1")"; }

# A client command, pointed at this cluster, with a timeout; in the master's mount namespace
# (its /etc/hosts names the exec hosts, which qconf resolves) once that runs, with init's root
# directory (-r: entering a mount namespace would leave a chroot we run in).
ge() {
  local dir=$1 init; shift
  init=$(cat "$dir/init.hostpid" 2>/dev/null || true)
  if [[ "$init" =~ ^[0-9]+$ ]] && pid_is_ours "$init" "$dir"; then
    (. "$dir/env.sh" && PATH="$GE_BIN:$PATH" timeout 10 nsenter -t "$init" -m -r -w "$@")
  else
    (. "$dir/env.sh" && PATH="$GE_BIN:$PATH" timeout 10 "$@")
  fi
}

cmd_stop() {
  local dir=$1 pids f veth
  [ -d "$dir" ] || { echo "gridengine-test-cluster: $dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  stop_watchdog "$dir"
  pids=$(namespaces_processes "$dir" | sort -un)
  if [ -n "$pids" ]; then
    # SIGTERM to the namespace's init: it stops the daemons and exits; the kernel then kills
    # whatever is left in the namespace (shepherds, jobs, their qrsh tasks). The jobs are
    # not deleted first: the spool goes with DIR.
    term_namespace_inits "$dir" "$pids"
    # qmaster takes ~5 s to shut down cleanly; its state goes with DIR, so 1 s, then SIGKILL.
    end_processes namespaces_processes "$dir" 10
  fi
  # A veth pair goes with its network namespace; one whose namespace never got it may be left.
  for f in "$dir"/sgehost*.veth; do
    [ -f "$f" ] || continue
    veth=$(cat "$f")
    ! ip link show "$veth" >/dev/null 2>&1 || ip link del "$veth" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "gridengine-test-cluster: stopped the cluster of $dir"
}

cmd_status() {
  local dir=$1 p
  [ -f "$dir/env.sh" ] || die "no cluster recorded in $dir"
  dir=$(cd "$dir" && pwd -P)
  cat "$dir/env.sh"
  echo "processes:"
  for p in $(namespaces_processes "$dir" | sort -un); do
    echo "  $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"
  done
  ge "$dir" qhost || echo "qhost failed"
  ge "$dir" qstat -f -u '*' || echo "qstat failed"
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
  # Name resolution in the master's namespace: this machine's, plus the exec hosts.
  local h
  { cat /etc/hosts; for h in $(exec_hosts); do echo "$(host_addr "$h") $h"; done; } >"$dir/hosts"
  { echo "$dir"; tr ':' '\n' <<<"${GRIDENGINE_TEST_CLUSTER_SHARED:-}"; } >"$dir/shared.paths"
  for h in $(exec_hosts); do
    printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "$(host_addr "$h")" "$h" "$(peer_addr "$h")" "$HOST" >"$dir/$h.hosts"
  done
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
mount --make-rprivate /
mount --bind '$dir/hosts' /etc/hosts
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

# The init of exec host H (PID 1 of its namespaces): names the host, gives it its /etc/hosts,
# waits for its end of the veth pair, configures it, then starts execd as the master's init
# does.
write_host_init() {
  local dir=$1 h=$2
  cat >"$dir/$h.init.sh" <<EOF
#!/usr/bin/env bash
# init of Grid Engine exec host $h of the test cluster in $dir
set -e
. '$dir/env.sh'
export SGE_ND=1
cd '$dir'
hostname $h
mount --make-rprivate /
# A /tmp of its own, as a machine has; DIR and the shared paths under /tmp stay as they are.
mapfile -t shared <'$dir/shared.paths'
mount --bind /tmp /mnt
mount -t tmpfs -o mode=1777,size=256m tmpfs /tmp
for p in "\${shared[@]}"; do
  case "\$p" in /tmp/?*) mkdir -p "\$p"; mount --bind "/mnt/\${p#/tmp/}" "\$p" ;; esac
done
umount -l /mnt
mount --bind '$dir/$h.hosts' /etc/hosts
for i in \$(seq 200); do [ -e '$dir/$h.net' ] && break; sleep 0.05; done
ip link set lo up
ip addr add $(host_addr "$h")/30 dev $(veth_inner "$h")
ip link set $(veth_inner "$h") up
touch '$dir/$h.up'
pids=""
stop() { [ -z "\$pids" ] || kill -TERM \$pids 2>/dev/null; wait; exit 0; }
trap stop TERM INT
for i in \$(seq 600); do [ -e '$dir/execd.go' ] && break; sleep 0.05; done
/usr/sbin/sge_execd >>'$dir/$h.execd.out' 2>&1 &
pids="\$!"
echo "\$pids" >'$dir/$h.daemons.nspid'
# The host lives on without its execd (as a machine does): the tests stop it by PID.
while :; do sleep 1 & wait \$!; done
EOF
}

# Start the namespaces of exec host H (setsid: they outlive this script) and record them.
start_host() {
  local dir=$1 h=$2 init
  write_host_init "$dir" "$h"
  start_namespaces "$dir" "$h." "$dir/$h.init.sh" --uts --net ||
    fail_start "$dir" "no namespace init under unshare $(cat "$dir/$h.unshare.pid") ($h)"
  init=$(cat "$dir/$h.init.hostpid")
  # The veth pair: this machine's end here, the other in the host's network namespace.
  veth_outer "$h" >"$dir/$h.veth"
  { ip link add "$(veth_outer "$h")" type veth peer name "$(veth_inner "$h")" netns "$init" &&
    ip addr add "$(peer_addr "$h")/30" dev "$(veth_outer "$h")" &&
    ip link set "$(veth_outer "$h")" up; } >>"$dir/$h.init.out" 2>&1 ||
    fail_start "$dir" "could not connect $h's network namespace (ip link add ... type veth)"
  touch "$dir/$h.net"
}

write_objects() {
  local dir=$1 h
  for h in "$HOST" $(exec_hosts); do
    cat >"$dir/exechost-$h.conf" <<EOF
hostname $h
load_scaling NONE
complex_values NONE
user_lists NONE
xuser_lists NONE
projects NONE
xprojects NONE
usage_scaling NONE
report_variables NONE
EOF
  done
  cat >"$dir/pe.conf" <<EOF
pe_name            smp
slots              $((SLOTS + SPAN_SLOTS + NHOSTS * HOST_SLOTS))
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
  local dir=$1 pid init t0 t1 h
  [ "$(id -u)" = 0 ] || die "must run as root (execd runs jobs as any user)"
  for b in /usr/sbin/sge_qmaster /usr/sbin/sge_execd "$GE_BIN/qconf" "$GE_BIN/qsub" "$GE_BIN/qrsh" \
           "$GE_BIN/spoolinit" /usr/share/gridengine/default-configuration; do
    [ -e "$b" ] || die "$b not found (install gridengine-master gridengine-exec gridengine-client)"
  done
  [[ "$NHOSTS" =~ ^[0-8]$ ]] || die "GRIDENGINE_TEST_CLUSTER_HOSTS must be 0..8, got '$NHOSTS'"
  command -v unshare >/dev/null || die "unshare not found (util-linux)"
  unshare --pid --fork --mount-proc true 2>/dev/null || die "unshare --pid refused here"
  if [ "$NHOSTS" -gt 0 ]; then
    command -v ip >/dev/null || die "ip not found (iproute2), needed for the exec hosts' network"
    unshare --net --uts true 2>/dev/null || die "unshare --net --uts refused here (exec hosts need them)"
    for h in $(exec_hosts); do
      ! ip -o addr show 2>/dev/null | grep -qF " $(peer_addr "$h")/" ||
        die "address $(peer_addr "$h") is already in use (a cluster of another run on port $PORT?)"
    done
  fi
  t0=$(date +%s.%N)
  if [ -f "$dir/unshare.pid" ]; then cmd_stop "$dir" >/dev/null; fi
  ! port_open 127.0.0.1 "$PORT" || die "port $PORT is already in use (a cluster of another run?)"
  ! port_open 127.0.0.1 "$((PORT + 1))" || die "port $((PORT + 1)) is already in use"
  dir=$(abs_dir "$dir")
  chmod 700 "$dir"
  write_root "$dir"
  write_init "$dir"
  write_objects "$dir"

  start_namespaces "$dir" "" "$dir/init.sh" ||
    { cmd_stop "$dir" >&2 || true; die "no namespace init under unshare $(cat "$dir/unshare.pid")"; }
  pid=$(cat "$dir/unshare.pid")
  if [ -n "${GRIDENGINE_TEST_CLUSTER_OWNER_PID:-}" ]; then
    start_watchdog "$dir" "$GRIDENGINE_TEST_CLUSTER_OWNER_PID" "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")"
  fi
  # The exec hosts' namespaces come up while qmaster starts.
  for h in $(exec_hosts); do start_host "$dir" "$h"; done

  wait_for "$dir" 200 qconf -sh || fail_start "$dir" "qmaster did not answer within 20 s"
  # Each exec host's jobs get their temporary directories in a directory of their own: /tmp
  # is this machine's, and two hosts' shepherds would share (and remove) one directory.
  local span_slots="$SPAN_SLOTS" span_seq=0 span_tmp=/tmp all_hosts="$HOST"
  for h in $(exec_hosts); do
    span_slots="$span_slots,[$h=$HOST_SLOTS]"
    span_seq="$span_seq,[$h=$(host_num "$h")]"
    span_tmp="$span_tmp,[$h=$dir/$h.tmp]"
    mkdir -p -m 1777 "$dir/$h.tmp"
    all_hosts="$all_hosts $h"
  done
  {
    local added=yes
    for h in $all_hosts; do ge "$dir" qconf -Ae "$dir/exechost-$h.conf" || added=no; done
    [ "$added" = yes ] &&
    ge "$dir" qconf -as "$HOST" &&
    ge "$dir" qconf -Ap "$dir/pe.conf" &&
    ge "$dir" qconf -sq >"$dir/queue.template" &&
    sed -e 's/^qname .*/qname all.q/' -e "s/^hostlist .*/hostlist $HOST/" \
        -e 's/^pe_list .*/pe_list smp/' -e "s/^slots .*/slots $SLOTS/" \
        -e 's/^load_thresholds .*/load_thresholds NONE/' -e 's|^shell .*|shell /bin/sh|' \
        "$dir/queue.template" >"$dir/queue.conf" &&
    ge "$dir" qconf -Aq "$dir/queue.conf" &&
    if [ "$NHOSTS" -gt 0 ]; then
      sed -e 's/^qname .*/qname span.q/' -e "s/^hostlist .*/hostlist $all_hosts/" \
          -e "s/^seq_no .*/seq_no $span_seq/" -e "s|^tmpdir .*|tmpdir $span_tmp|" \
          -e 's/^pe_list .*/pe_list smp/' -e "s/^slots .*/slots $span_slots/" \
          -e 's/^load_thresholds .*/load_thresholds NONE/' -e 's|^shell .*|shell /bin/sh|' \
          "$dir/queue.template" >"$dir/span.queue.conf" &&
      ge "$dir" qconf -Aq "$dir/span.queue.conf"
    fi &&
    ge "$dir" qconf -ssconf >"$dir/sched.template" &&
    sed -e 's/^schedule_interval .*/schedule_interval 0:0:1/' \
        -e 's/^queue_sort_method .*/queue_sort_method seqno/' \
        -e 's/^flush_submit_sec .*/flush_submit_sec 1/' -e 's/^flush_finish_sec .*/flush_finish_sec 1/' \
        -e 's/^job_load_adjustments .*/job_load_adjustments NONE/' \
        -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time 0:0:0/' \
        "$dir/sched.template" >"$dir/sched.conf" &&
    ge "$dir" qconf -Msconf "$dir/sched.conf"
  } >"$dir/configure.out" 2>&1 || { cat "$dir/configure.out" >&2; fail_start "$dir" "configuring the cluster failed"; }
  touch "$dir/execd.go"

  # Ready when every queue instance is open (each execd reported its load).
  local want="all.q@$HOST" ok=0 deadline=$(($(date +%s) + 30)) open
  [ "$NHOSTS" = 0 ] || for h in $all_hosts; do want="$want span.q@$h"; done
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || break
    open=$(ge "$dir" qstat -f 2>/dev/null | awk '$1 ~ /@/ && NF < 6 { print $1 }' | sort | tr '\n' ' ' || true)
    if [ "$open" = "$(echo $want | tr ' ' '\n' | sort | tr '\n' ' ')" ]; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || fail_start "$dir" "the exec hosts did not come up within 30 s (open: ${open:-none}; wanted: $want)"
  t1=$(date +%s.%N)
  echo "gridengine-test-cluster: hosts $all_hosts up in $dir (port $PORT, $SLOTS slots in all.q, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)"
}

# Start exec host H's sge_execd again (after a test stopped it by its PID, DIR/H.daemons.nspid).
cmd_start_execd() {
  local dir=$1 h=$2 init
  init=$(cat "$dir/$h.init.hostpid" 2>/dev/null || true)
  [[ "$init" =~ ^[0-9]+$ ]] && pid_is_ours "$init" "$dir" || die "no exec host $h in $dir"
  (. "$dir/env.sh" && SGE_ND=1 exec setsid nohup nsenter -t "$init" -a -r -w /usr/sbin/sge_execd) \
    </dev/null >>"$dir/$h.execd.out" 2>&1 &
  local deadline=$(($(date +%s) + 20)) state
  while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(ge "$dir" qstat -f -q "span.q@$h" 2>/dev/null | awk -v q="span.q@$h" '$1 == q { print (NF >= 6 ? $6 : "ok") }' || true)
    [ "$state" = ok ] && { echo "gridengine-test-cluster: execd of $h up again"; return 0; }
    sleep 0.2
  done
  die "the execd of $h did not come back within 20 s"
}

case "${1:-}" in
  start-execd) [ $# -eq 3 ] || die "usage: $0 start-execd DIR HOST"; cmd_start_execd "$2" "$3" ;;
  start)  [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
  stop)   [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  watch)  [ $# -eq 3 ] || die "usage: $0 watch DIR OWNER_PID"; watch_owner "$2" "$3" cmd_stop ;;
  *) die "usage: $0 start DIR | stop DIR | status DIR" ;;
esac
