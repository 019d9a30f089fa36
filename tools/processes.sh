# Process helpers sourced by tools/ssh-test-hosts.sh, tools/slurm-test-cluster.sh and
# tools/gridengine-test-cluster.sh (which define die()). A run keeps its state in a directory
# DIR; its namespaces are recorded there by start_namespaces().

# Absolute path of DIR, created if missing (configuration files need absolute names).
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# True if something accepts TCP connections on ADDR:PORT (bash's /dev/tcp; no extra tools).
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# True if PID runs and its command line mentions DIR (guards against PID reuse).
pid_is_ours() {
  local pid=$1 dir=$2 cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ "$cmd" == *"$dir"* ]]
}

# Every process in the PID namespace with inode INO (one stat for all of /proc: a stat per
# process takes ~1 s on a busy machine, and stopping asks this every 0.1 s).
pidns_members() {
  local ino=$1
  [ -n "$ino" ] || return 0
  stat -L -c '%i %n' /proc/[0-9]*/ns/pid 2>/dev/null |
    awk -v ino="$ino" '$1 == ino { split($2, p, "/"); print p[3] }'
  return 0
}

# start_namespaces DIR NAME SCRIPT UNSHARE_OPTION...: run `bash SCRIPT` as PID 1 (init) of
# new namespaces (--pid is implied), under setsid and nohup so that they outlive this script
# and the caller's process group. Records DIR/NAMEunshare.pid, DIR/NAMEinit.hostpid (init as
# this machine sees it) and DIR/NAMEpidns (its PID namespace); NAME is "" or "HOST.".
start_namespaces() {
  local dir=$1 name=$2 script=$3 pid init=""; shift 3
  setsid nohup unshare "$@" --pid --fork --mount-proc --kill-child bash "$script" \
    </dev/null >>"$dir/${name}init.out" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/${name}unshare.pid"
  for _ in $(seq 100); do
    init=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' | head -n 1 || true)
    [ -n "$init" ] && break
    sleep 0.02
  done
  [ -n "$init" ] || return 1
  echo "$init" >"$dir/${name}init.hostpid"
  stat -L -c %i "/proc/$init/ns/pid" >"$dir/${name}pidns"
}

# The processes of the namespaces recorded in DIR: each unshare and everything in its PID
# namespace (searched only while its unshare runs: the inode number could be reused later).
namespaces_processes() {
  local dir=$1 f pid
  for f in "$dir"/unshare.pid "$dir"/*.unshare.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    pid_is_ours "$pid" "$dir" || continue
    echo "$pid"
    pidns_members "$(cat "${f%unshare.pid}pidns" 2>/dev/null || true)"
  done
}

# SIGTERM to the init of each namespace recorded in DIR that still runs (among PIDS, from
# namespaces_processes): it stops its daemons and exits, and the kernel then kills whatever
# is left in its namespace.
term_namespace_inits() {
  local dir=$1 pids=$2 f init
  for f in "$dir"/init.hostpid "$dir"/*.init.hostpid; do
    [ -f "$f" ] || continue
    init=$(cat "$f" 2>/dev/null || true)
    if [[ "$init" =~ ^[0-9]+$ ]] && echo "$pids" | grep -qx "$init"; then
      kill -TERM "$init" 2>/dev/null || true
    fi
  done
}

# end_processes LIST DIR TRIES: wait up to TRIES x 0.1 s for the processes that `LIST DIR`
# prints (PIDs, one a line) to be gone, then SIGKILL what is left; fail if anything survives.
end_processes() {
  local list=$1 dir=$2 tries=$3 pids i
  for i in $(seq "$tries"); do
    pids=$("$list" "$dir" | sort -un)
    [ -z "$pids" ] && return 0
    sleep 0.1
  done
  kill -KILL $pids 2>/dev/null || true
  sleep 0.3
  pids=$("$list" "$dir" | sort -un)
  [ -z "$pids" ] && return 0
  ps -o pid,ppid,stat,cmd -p "$(echo $pids | tr ' ' ',')" >&2 || true
  die "processes of $dir survived SIGKILL: $pids"
}

# ---- the watchdog: stops a run once the process that owns it (a test run) is gone --------

# start_watchdog DIR OWNER SCRIPT: `bash SCRIPT watch DIR OWNER`, detached; DIR/watchdog.pid.
start_watchdog() {
  local dir=$1 owner=$2 script=$3
  setsid nohup bash "$script" watch "$dir" "$owner" </dev/null >/dev/null 2>&1 &
  echo "$!" >"$dir/watchdog.pid"
}

# Stop the watchdog of DIR first, so that it does not race with a stop; never ourselves.
stop_watchdog() {
  local dir=$1 w
  [ -f "$dir/watchdog.pid" ] || return 0
  w=$(cat "$dir/watchdog.pid")
  if [ "$w" != "$$" ] && [ "$w" != "${PROCESSES_WATCHDOG:-}" ] && pid_is_ours "$w" "$dir"; then
    kill -TERM "$w" 2>/dev/null || true
  fi
}

# watch_owner DIR OWNER STOP: once OWNER is gone, `STOP DIR`; if DIR is gone too (the owner's
# tempdir was removed), SIGKILL to each recorded unshare takes its child, the namespace's init,
# with it (--kill-child), and with that the whole namespace.
watch_owner() {
  local dir=$1 owner=$2 stop=$3 pids="" f p
  sleep 1
  for f in "$dir"/unshare.pid "$dir"/*.unshare.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
  if [ -d "$dir" ]; then
    PROCESSES_WATCHDOG=$$ "$stop" "$dir" >/dev/null 2>&1
  else
    for p in $pids; do [[ "$p" =~ ^[0-9]+$ ]] && kill -KILL "$p" 2>/dev/null; done
  fi
  return 0
}
