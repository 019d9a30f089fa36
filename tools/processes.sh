# Process helpers sourced by tools/ssh-test-hosts.sh, tools/slurm-test-cluster.sh and
# tools/gridengine-test-cluster.sh (which define die()).

# Every process in the PID namespace with inode INO.
pidns_members() {
  local ino=$1 p
  [ -n "$ino" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/pid" 2>/dev/null || true)" = "$ino" ] && echo "${p#/proc/}"
  done
  return 0
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
