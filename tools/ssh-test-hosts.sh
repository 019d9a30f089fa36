#!/usr/bin/env bash
# SSH test hosts for the test suite: real sshd processes on loopback addresses of this machine,
# each in its own PID and UTS namespace, so that a remote PID means nothing locally.
#
#   tools/ssh-test-hosts.sh start DIR N   start N hosts (testhost1 on 127.0.0.2, ...), files in DIR
#   tools/ssh-test-hosts.sh stop DIR      stop every host recorded in DIR, then remove DIR
#   tools/ssh-test-hosts.sh status DIR    print DIR/hosts.tsv and whether each host runs
#
# Each host looks like a remote machine of its own (with separate namespaces): a mount
# namespace with a private /tmp (tmpfs) and a private HOME (tmpfs) for the login user
# `ptest` (not root; created with useradd if missing), and /usr/local/lib/R/site-library
# hidden behind an empty tmpfs, so R there sees only base R and Debian's packages in
# /usr/lib/R/site-library -- our package is not installed there. Per host (by number):
#   testhost1, testhost2, testhost8.. login shell bash, our package not installed
#                                     (testhost2 has an ECDSA host key beside ed25519;
#                                     testhost8.. share one host key: cheap to start many)
#   testhost3                         bash; our package installed in ptest's own R library
#                                     (a copy of SSH_TEST_HOSTS_PACKAGE), for the fork server
#   testhost4                         login shell dash
#   testhost5                         login shell tcsh
#   testhost6                         login shell fish
#   testhost7                         bash, a tiny /tmp (64 KiB) that is full
# hosts.tsv lists name, address, port, pid, shell and whether the package is installed.
#
# Environment:
#   SSH_TEST_HOSTS_PORT       port of every host (default 2222; 22 may belong to a system sshd)
#   SSH_TEST_HOSTS_PACKAGE    an installed package directory (.../parallelly) to copy into the
#                             R library of ptest on testhost3 (not copied when unset)
#   SSH_TEST_HOSTS_PACKAGE_HOSTS  the numbers of the hosts that get that copy (default "3"; the
#                             bench's many-host measure puts it on every host it uses)
#   SSH_TEST_HOSTS_USER       the login user (default ptest)
#   SSH_TEST_HOSTS_OWNER_PID  if set, a watchdog stops the hosts once this process is gone, so a
#                             killed test run does not leave sshd holding the ports
#   SSH_TEST_HOSTS_SHARED=1   do not use namespaces (to test the fallback)
#   SSH_TEST_HOSTS_SSHD_OPTIONS  sshd_config lines (newline-separated) put first in every
#                             host's sshd_config, where they win (sshd takes a keyword's first
#                             value): e.g. "Ciphers aes256-ctr" for hosts with one cipher
#   SSH_TEST_HOSTS_PASSWORD   set this password for the login user (use a user of its own with
#                             SSH_TEST_HOSTS_USER; the default user has none), for password hosts
#
# Every host also trusts a user CA of the run (DIR/user_ca.pub): DIR/id_cert, a key that is
# not in authorized_keys, logs in with its certificate DIR/id_cert-cert.pub only.
#
# Needs root. Only 127.0.0.0/8 addresses are used. Only processes recorded in DIR are killed.
set -euo pipefail

SSHD=/usr/sbin/sshd
PORT="${SSH_TEST_HOSTS_PORT:-2222}"
TUSER="${SSH_TEST_HOSTS_USER:-ptest}"

die() { echo "ssh-test-hosts: $*" >&2; exit 1; }
. "$(dirname "$0")/processes.sh"

host_addr() { echo "127.0.0.$(($1 + 1))"; }

# Login shell of host I.
host_shell() {
  case $1 in
    4) echo /usr/bin/dash ;;
    5) echo /usr/bin/tcsh ;;
    6) echo /usr/bin/fish ;;
    *) echo /bin/bash ;;
  esac
}

# Whether our package goes into the login user's library on host I (yes/no).
host_package() {
  if [ -n "${SSH_TEST_HOSTS_PACKAGE:-}" ] && [[ " ${SSH_TEST_HOSTS_PACKAGE_HOSTS:-3} " == *" $1 "* ]]; then
    echo yes
  else
    echo no
  fi
}

# The plain hosts (8 and up) are alike: they share one host key and one checked config
# layout, so that 16 or more start cheaply.
host_key_file() { if [ "$1" -ge 8 ]; then echo "$2/ssh_host_ed25519_key_plain"; else echo "$2/ssh_host_ed25519_key_testhost$1"; fi; }

# Size of host I's /tmp.
host_tmp_size() { if [ "$1" = 7 ]; then echo 64k; else echo 256m; fi; }

# The login user, created once (useradd; another run may create it at the same moment).
ensure_user() {
  if ! id "$TUSER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --comment "parallelly SSH test user" "$TUSER" 2>/dev/null ||
      id "$TUSER" >/dev/null 2>&1 || die "cannot create the login user $TUSER (useradd)"
  fi
  if [ -n "${SSH_TEST_HOSTS_PASSWORD:-}" ]; then
    printf '%s:%s\n' "$TUSER" "$SSH_TEST_HOSTS_PASSWORD" | chpasswd ||
      die "cannot set the password of $TUSER (chpasswd)"
  # No password, but not locked either ('!' would make sshd refuse even a key: UsePAM no).
  elif [ "$(getent shadow "$TUSER" | cut -d: -f2)" != '*' ]; then usermod -p '*' "$TUSER"; fi
}

# Commands run inside host I's new namespaces before sshd starts (as its PID 1): private
# /tmp and HOME, the site library hidden, the login shell set, and the package copied.
# DIR itself stays visible at its path (sshd reads its files there; mode 700, root only).
host_setup() {
  local i=$1 dir=$2 shell home uid gid
  shell=$(host_shell "$i")
  home=$(getent passwd "$TUSER" | cut -d: -f6)
  uid=$(id -u "$TUSER"); gid=$(id -g "$TUSER")
  # This host's /etc/passwd: the same, but with its own login shell for the user.
  awk -F: -v OFS=: -v u="$TUSER" -v sh="$shell" '$1 == u { $7 = sh } { print }' /etc/passwd \
    >"$dir/passwd_testhost$i"
  chmod 644 "$dir/passwd_testhost$i"
  cat <<EOF
set -e
hostname testhost$i
mount --make-rprivate /
mount --bind '$dir' /mnt
mount -t tmpfs -o mode=1777,size=$(host_tmp_size "$i") tmpfs /tmp
mkdir -p '$dir'
mount --bind /mnt '$dir'
umount /mnt
mount --bind '$dir/passwd_testhost$i' /etc/passwd
mount -t tmpfs -o mode=755,size=1m tmpfs /usr/local/lib/R/site-library
mount -t tmpfs -o mode=755,size=256m tmpfs '$home'
mkdir -p '$home/.ssh'
cp '$dir/authorized_keys' '$home/.ssh/authorized_keys'
EOF
  if [ "$(host_package "$i")" = yes ]; then
    cat <<EOF
mkdir -p '$home/$R_LIB_REL'
cp -a '$SSH_TEST_HOSTS_PACKAGE' '$home/$R_LIB_REL/'
EOF
  fi
  if [ "$i" = 7 ]; then
    # Fill the tiny /tmp (as root: the user cannot even take the space back).
    echo "dd if=/dev/zero of=/tmp/filler bs=4k 2>/dev/null || true"
  fi
  cat <<EOF
chown -R $uid:$gid '$home'
chmod 700 '$home/.ssh'
EOF
}

# Children of PID (from /proc/PID/task/*/children, else by scanning the ppid field).
children_of() {
  local pid=$1 f
  if compgen -G "/proc/$pid/task/*/children" >/dev/null; then
    for f in /proc/"$pid"/task/*/children; do
      cat "$f" 2>/dev/null || true
    done | tr ' ' '\n' | grep -E '^[0-9]+$' || true
  else
    for f in /proc/[0-9]*/stat; do
      awk -v p="$pid" '{ sub(/^.*\) /, ""); if ($2 == p) { split(FILENAME, a, "/"); print a[3] } }' \
        "$f" 2>/dev/null || true
    done
  fi
}

# PID and all its descendants, parents first.
descendants() {
  local pid=$1 c
  echo "$pid"
  for c in $(children_of "$pid"); do descendants "$c"; done
}

# PIDs of everything that belongs to the hosts recorded in DIR.
host_processes() {
  local dir=$1 f pid ino
  for f in "$dir"/testhost*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    pid_is_ours "$pid" "$dir" || continue
    descendants "$pid"
    # A namespace dies with its init, so it is only searched while the host's unshare runs
    # (its inode number could be reused later).
    ino=$(cat "${f%.pid}.pidns" 2>/dev/null || true)
    pidns_members "$ino"
  done
  # sshd's listener and its re-executed connection handlers carry DIR in their command line.
  pgrep -f -- "$dir/sshd_config_testhost" || true
}

cmd_stop() {
  local dir=$1 pids i
  [ -d "$dir" ] || { echo "ssh-test-hosts: $dir does not exist; nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd -P)
  # The watchdog is stopped first so that it does not race with us; never ourselves.
  if [ -f "$dir/watchdog.pid" ]; then
    local w; w=$(cat "$dir/watchdog.pid")
    if [ "$w" != "$$" ] && [ "$w" != "${SSH_TEST_HOSTS_WATCHDOG:-}" ] && pid_is_ours "$w" "$dir"; then
      kill -TERM "$w" 2>/dev/null || true
    fi
  fi
  # SIGTERM first (sshd exits cleanly; a namespace's init exiting takes the namespace with it;
  # unshare itself ignores SIGTERM while it waits, but goes when its child does).
  pids=$(host_processes "$dir" | sort -un)
  [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  end_processes host_processes "$dir" 30
  rm -rf "$dir"
  echo "ssh-test-hosts: stopped hosts of $dir"
}

cmd_status() {
  local dir=$1 name addr port pid state
  [ -f "$dir/hosts.tsv" ] || die "no hosts recorded in $dir"
  dir=$(cd "$dir" && pwd -P)
  cat "$dir/hosts.tsv"
  echo "pidns: $(cat "$dir/pidns" 2>/dev/null || echo unknown)"
  while IFS=$'\t' read -r name addr port pid _; do
    [ "$name" = name ] && continue
    if pid_is_ours "$pid" "$dir"; then state=running; else state="not running"; fi
    if port_open "$addr" "$port"; then state="$state, port open"; else state="$state, port closed"; fi
    echo "$name ($pid): $state"
  done <"$dir/hosts.tsv"
}

# Stop the hosts of DIR once OWNER is gone (runs detached; see SSH_TEST_HOSTS_OWNER_PID).
cmd_watch() {
  local dir=$1 owner=$2 pids="" f p
  # Remember the hosts' PIDs now: the owner may delete DIR on its way out (R removes its
  # tempdir at exit), and the hosts must be stopped all the same.
  sleep 2
  for f in "$dir"/testhost*.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
  if [ -d "$dir" ]; then
    SSH_TEST_HOSTS_WATCHDOG=$$ cmd_stop "$dir" >/dev/null 2>&1
  else
    # unshare runs with --kill-child: ending it ends the host's whole PID namespace.
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 2
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  return 0
}

cmd_start() {
  local dir=$1 n=$2 i addr mode pid init ino t0 t1
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 250 ] || die "N must be 1..250, got '$n'"
  [ "$(id -u)" = 0 ] || die "must run as root (sshd needs it to log in as root)"
  [ -x "$SSHD" ] || die "$SSHD not found (install openssh-server)"
  command -v ssh-keygen >/dev/null || die "ssh-keygen not found"
  t0=$(date +%s.%N)
  # Idempotent: hosts left by an earlier start in the same DIR are stopped first.
  if compgen -G "$dir/testhost*.pid" >/dev/null; then
    cmd_stop "$dir" >/dev/null
  fi
  # Refuse to start next to something else on our ports (e.g. hosts of another run).
  for i in $(seq "$n"); do
    addr=$(host_addr "$i")
    ! port_open "$addr" "$PORT" || die "$addr:$PORT is already in use (hosts of another run?)"
  done
  dir=$(abs_dir "$dir")
  mkdir -p /run/sshd  # sshd's privilege-separation directory
  chmod 700 "$dir"

  # Separate PID namespaces where the kernel lets us, else a plain sshd.
  if [ "${SSH_TEST_HOSTS_SHARED:-0}" != 1 ] && command -v unshare >/dev/null &&
     unshare --uts --pid --fork --mount-proc true 2>/dev/null; then
    mode=separate
  else
    mode=shared
  fi
  echo "$mode" >"$dir/pidns"
  # Realistic hosts need a mount namespace; the shared fallback logs in as root as before.
  local login=root keysfile="$dir/authorized_keys"
  if [ "$mode" = separate ]; then
    ensure_user
    login=$TUSER
    keysfile=.ssh/authorized_keys
    if [ -n "${SSH_TEST_HOSTS_PACKAGE:-}" ]; then
      [ -f "$SSH_TEST_HOSTS_PACKAGE/DESCRIPTION" ] ||
        die "SSH_TEST_HOSTS_PACKAGE=$SSH_TEST_HOSTS_PACKAGE is no installed package"
      # Copied into the run's directory first: inside a host's namespace the package may sit
      # under the tmpfs that hides /usr/local/lib/R/site-library (where CI installs it).
      mkdir -p "$dir/package"
      cp -a "$SSH_TEST_HOSTS_PACKAGE" "$dir/package/" || die "cannot copy $SSH_TEST_HOSTS_PACKAGE"
      SSH_TEST_HOSTS_PACKAGE="$dir/package/$(basename "$SSH_TEST_HOSTS_PACKAGE")"
      # The user's library, relative to HOME, as R defines it (R_LIBS_USER of Renviron).
      R_LIB_REL=$(env -u R_LIBS_USER -u R_LIBS HOME=/nonexistent-home Rscript --vanilla -e \
        'cat(sub("^/nonexistent-home/", "", path.expand(Sys.getenv("R_LIBS_USER"))))') ||
        die "cannot ask R for the user library path"
    fi
  fi

  # Fresh keys each run: one authorized client key, one that is not authorized.
  ssh-keygen -q -t ed25519 -N '' -C parallelly-test -f "$dir/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C parallelly-test-other -f "$dir/id_ed25519_other"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  # A user CA and a key that logs in by its certificate alone (principal: the login user).
  ssh-keygen -q -t ed25519 -N '' -C parallelly-test-ca -f "$dir/user_ca"
  ssh-keygen -q -t ed25519 -N '' -C parallelly-test-cert -f "$dir/id_cert"
  ssh-keygen -q -s "$dir/user_ca" -I parallelly-test -n "$login" -V -5m:+1d "$dir/id_cert.pub" ||
    die "cannot sign the test certificate"
  : >"$dir/known_hosts"
  : >"$dir/ssh_config"
  printf 'name\taddress\tport\tpid\tuser\tshell\tpackage\n' >"$dir/hosts.tsv"

  for i in $(seq "$n"); do
    addr=$(host_addr "$i")
    local hostkey; hostkey=$(host_key_file "$i" "$dir")
    [ -f "$hostkey" ] || ssh-keygen -q -t ed25519 -N '' -C "testhost$i" -f "$hostkey"
    # testhost2 has an ECDSA host key too (as real hosts have several types).
    local extra_key=""
    if [ "$i" = 2 ]; then
      ssh-keygen -q -t ecdsa -b 256 -N '' -C "testhost$i" -f "$dir/ssh_host_ecdsa_key_testhost$i"
      extra_key="HostKey $dir/ssh_host_ecdsa_key_testhost$i"
    fi
    cat >"$dir/sshd_config_testhost$i" <<EOF
# sshd for testhost$i of the parallelly test suite (tools/ssh-test-hosts.sh)
${SSH_TEST_HOSTS_SSHD_OPTIONS:-}
ListenAddress $addr:$PORT
HostKey $hostkey
$extra_key
PidFile $dir/sshd_testhost$i.pidfile
AuthorizedKeysFile $keysfile
PermitRootLogin $([ "$login" = root ] && echo prohibit-password || echo no)
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
GatewayPorts no
PermitTTY yes
X11Forwarding no
LogLevel VERBOSE
# OpenSSH's default, stated because a multiplexing client meets it: 10 channels per connection.
MaxSessions 10
MaxStartups 100:30:200
TrustedUserCAKeys $dir/user_ca.pub
EOF
    local key; key=$(cut -d' ' -f1,2 "$hostkey.pub")
    printf '[%s]:%s %s\n[testhost%s]:%s %s\n' "$addr" "$PORT" "$key" "$i" "$PORT" "$key" \
      >>"$dir/known_hosts"
    if [ -n "$extra_key" ]; then
      key=$(cut -d' ' -f1,2 "$dir/ssh_host_ecdsa_key_testhost$i.pub")
      printf '[%s]:%s %s\n[testhost%s]:%s %s\n' "$addr" "$PORT" "$key" "$i" "$PORT" "$key" \
        >>"$dir/known_hosts"
    fi
    cat >>"$dir/ssh_config" <<EOF
Host testhost$i
  HostName $addr
  Port $PORT
  User $login
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes

EOF
    if [ "$i" -le 8 ]; then
      "$SSHD" -t -f "$dir/sshd_config_testhost$i" || die "invalid $dir/sshd_config_testhost$i"
    fi

    # setsid + nohup: the host outlives this script and the caller's terminal/process group.
    # Neither forks here (a background job is no group leader), so $! is the unshare/sshd PID.
    if [ "$mode" = separate ]; then
      setsid nohup unshare --uts --pid --fork --mount-proc --kill-child \
        sh -c "$(host_setup "$i" "$dir")
exec $SSHD -D -f '$dir/sshd_config_testhost$i' -E '$dir/sshd_testhost$i.log'" \
        </dev/null >>"$dir/sshd_testhost$i.out" 2>&1 &
    else
      setsid nohup "$SSHD" -D -f "$dir/sshd_config_testhost$i" -E "$dir/sshd_testhost$i.log" \
        </dev/null >>"$dir/sshd_testhost$i.out" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$dir/testhost$i.pid"
    if [ "$mode" = separate ]; then
      printf 'testhost%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$addr" "$PORT" "$pid" "$login" \
        "$(host_shell "$i")" "$(host_package "$i")" >>"$dir/hosts.tsv"
    else
      printf 'testhost%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$addr" "$PORT" "$pid" root \
        "$(getent passwd root | cut -d: -f7)" no >>"$dir/hosts.tsv"
    fi
  done

  # Optional watchdog: stop the hosts when the owning process (the test run) dies.
  if [ -n "${SSH_TEST_HOSTS_OWNER_PID:-}" ]; then
    setsid nohup bash "$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")" watch "$dir" \
      "$SSH_TEST_HOSTS_OWNER_PID" </dev/null >/dev/null 2>&1 &
    echo "$!" >"$dir/watchdog.pid"
  fi

  # Wait until every host accepts connections; record each namespace for `stop`.
  for i in $(seq "$n"); do
    addr=$(host_addr "$i")
    pid=$(cat "$dir/testhost$i.pid")
    local ok=0
    for _ in $(seq 100); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if port_open "$addr" "$PORT"; then ok=1; break; fi
      sleep 0.1
    done
    if [ "$ok" != 1 ]; then
      echo "ssh-test-hosts: testhost$i ($addr:$PORT) did not start; its log:" >&2
      cat "$dir/sshd_testhost$i.log" "$dir/sshd_testhost$i.out" >&2 2>/dev/null || true
      cmd_stop "$dir" >&2 || true
      exit 1
    fi
    if [ "$mode" = separate ]; then
      init=$(children_of "$pid" | head -n 1)
      [ -n "$init" ] || die "testhost$i: no namespace init under unshare $pid"
      ino=$(stat -L -c %i "/proc/$init/ns/pid")
      echo "$ino" >"$dir/testhost$i.pidns"
    fi
  done

  # Check with the system client when there is one (the suite must not depend on it).
  # (Not for password hosts: the check logs in with the key.)
  if [ -x /usr/bin/ssh ] && [ -z "${SSH_TEST_HOSTS_PASSWORD:-}" ]; then
    local out
    out=$(/usr/bin/ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=10 testhost1 \
      'hostname; echo $$' 2>&1) || { echo "$out" >&2; cat "$dir/sshd_testhost1.log" "$dir/sshd_testhost1.out" >&2 2>/dev/null || true; cmd_stop "$dir" >&2 || true; die "ssh to testhost1 failed"; }
    if [ "$mode" = separate ]; then
      [ "$(echo "$out" | sed -n 1p)" = testhost1 ] ||
        { echo "$out" >&2; cmd_stop "$dir" >&2 || true; die "testhost1 reports the wrong hostname"; }
    fi
  fi

  t1=$(date +%s.%N)
  echo "ssh-test-hosts: $n host(s) up in $dir (pidns: $mode, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)"
}

case "${1:-}" in
  start)  [ $# -eq 3 ] || die "usage: $0 start DIR N"; cmd_start "$2" "$3" ;;
  stop)   [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
  watch)  [ $# -eq 3 ] || die "usage: $0 watch DIR OWNER_PID"; cmd_watch "$2" "$3" ;;
  *) die "usage: $0 start DIR N | stop DIR | status DIR" ;;
esac
