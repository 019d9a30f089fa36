# Sourced by tools/ssh-test-hosts.sh and tools/slurm-test-cluster.sh (which define die()).
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
