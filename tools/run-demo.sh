#!/usr/bin/env bash
# Set up (if needed), install, and run the seed scenario. Run as root with sshd installed, it
# starts an SSH test host (tools/ssh-test-hosts.sh: an sshd in namespaces of its own on
# 127.0.0.2, a non-root login user, no parallelly installed there) and runs the scenario on
# c("localhost", "testhost1"); otherwise it says why and runs it on two local workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
bash tools/install-package.sh

workers="localhost,localhost"
why=""
if [ "$(id -u)" != 0 ]; then why="not running as root";
elif [ ! -x /usr/sbin/sshd ]; then why="sshd is not installed (openssh-server)"; fi
hosts_dir=""
if [ -z "$why" ]; then
  hosts_dir=$(mktemp -d /tmp/parallelly-demo-hosts.XXXXXX)
  trap 'bash tools/ssh-test-hosts.sh stop "$hosts_dir" >/dev/null 2>&1 || true' EXIT
  port=$(Rscript -e 'cat(parallelly::freePort())')
  if SSH_TEST_HOSTS_PORT=$port SSH_TEST_HOSTS_OWNER_PID=$$ \
       bash tools/ssh-test-hosts.sh start "$hosts_dir" 1 >"$hosts_dir.log" 2>&1; then
    workers="localhost,testhost1"
    export R_PARALLELLY_SSH_CONFIG="$hosts_dir/ssh_config"
    export R_PARALLELLY_SSH_KNOWN_HOSTS="$hosts_dir/known_hosts"
  else
    why="the SSH test host did not start (log: $hosts_dir.log)"
  fi
fi
if [ -n "$why" ]; then
  echo "Demo on local workers only: $why."
else
  echo "Demo on a local worker and a remote one (testhost1: an SSH test host on 127.0.0.2:$port)."
fi
PARALLELLY_DEMO_WORKERS="$workers" Rscript inst/scripts/seed-scenario.R
