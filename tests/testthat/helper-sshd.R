# Helpers for tests against real SSH servers on this machine (tools/ssh-test-hosts.sh):
# testhost1 on 127.0.0.2:PORT, testhost2 on 127.0.0.3:PORT (a free port per run), ..., each an sshd in its own PID
# and UTS namespace (where unshare is allowed), with keys generated for the run.
# Like real remote machines, each host has its own mount namespace with a private /tmp and
# HOME, and one logs in as the user `ptest`, not root; our package is not installed there
# (only Debian's reference parallelly in /usr/lib/R/site-library), except on testhost3:
#   testhost1, testhost2  bash, no package of ours    (most tests)
#   testhost3             bash, our package in ptest's own R library (the fork server)
#   testhost4 / 5 / 6     login shell dash / tcsh / fish
#   testhost7             a tiny /tmp that is full
# All of them start at once (about 1.5 s), so that no test restarts them.
#
#   hosts <- skip_if_no_ssh_hosts()      # skip unless root + sshd + the hosts started
#   skip_if_shared_pidns()               # skip unless the hosts have PID namespaces of their own
#   local_ssh_env(hosts)                 # point our SSH client at the hosts' config/known_hosts
#   remote_exec("testhost1", "ps -eo pid,comm")   # look at a host without the ssh client

# One set of hosts per test run; stopped at the end of the run (see ssh_test_hosts()).
ssh_test_hosts_n <- 7L
.ssh_test_hosts_cache <- new.env(parent = emptyenv())

# The start/stop script: tools/ in the source tree, else wherever the env var says
# (R CMD check runs the tests from a copy without tools/).
ssh_test_hosts_script <- function() {
  script <- tryCatch(testthat::test_path("..", "..", "tools", "ssh-test-hosts.sh"),
                     error = function(e) "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  script <- Sys.getenv("R_PARALLELLY_SSH_TEST_HOSTS_SCRIPT", "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  ""
}

# Why the SSH test hosts cannot run here, or "" if nothing is known to be missing.
ssh_test_hosts_missing <- function() {
  missing <- character()
  if (!identical(Sys.info()[["effective_user"]], "root"))
    missing <- c(missing, "not running as root")
  if (!file.exists("/usr/sbin/sshd"))
    missing <- c(missing, "/usr/sbin/sshd not installed (openssh-server)")
  if (!nzchar(ssh_test_hosts_script()))
    missing <- c(missing, paste("tools/ssh-test-hosts.sh not found",
                                "(set R_PARALLELLY_SSH_TEST_HOSTS_SCRIPT)"))
  paste(missing, collapse = "; ")
}

ssh_test_hosts_stop <- function() {
  hosts <- .ssh_test_hosts_cache$hosts
  rm(list = ls(.ssh_test_hosts_cache), envir = .ssh_test_hosts_cache)
  if (is.null(hosts)) return(invisible())
  out <- suppressWarnings(system2("bash", c(shQuote(hosts$script), "stop", shQuote(hosts$dir)),
                                  stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L)
    warning("stopping the SSH test hosts failed:\n", paste(out, collapse = "\n"), call. = FALSE)
  invisible()
}

# Start `n` SSH test hosts (once per test run; again only if more hosts are asked for) and
# return list(dir, config, known_hosts, identity, identity_other, hosts, pidns, script).
# `hosts` is a data.frame with columns name, address, port, pid (pid: the host's `unshare`
# process, or its sshd when pidns == "shared"), user (the login user), shell (its login
# shell there) and package ("yes" where our package is installed). Errors if the hosts cannot be started.
ssh_test_hosts <- function(n = ssh_test_hosts_n) {
  n <- max(as.integer(n), ssh_test_hosts_n)
  if (!is.null(.ssh_test_hosts_cache$error)) stop(.ssh_test_hosts_cache$error, call. = FALSE)
  cached <- .ssh_test_hosts_cache$hosts
  if (!is.null(cached) && nrow(cached$hosts) >= n) return(cached)
  if (!is.null(cached)) ssh_test_hosts_stop()

  why <- ssh_test_hosts_missing()
  if (nzchar(why)) stop("SSH test hosts unavailable: ", why, call. = FALSE)
  script <- ssh_test_hosts_script()
  dir <- tempfile("ssh-test-hosts-")
  # The watchdog stops the hosts should this R process die before the teardown runs.
  # A port of this run's own (unless one is given), so that test runs at the same time (a
  # check of the tarball beside a development run, say) do not collide.
  port <- Sys.getenv("SSH_TEST_HOSTS_PORT", "")
  if (!nzchar(port)) port <- as.character(parallelly::freePort(22000:29999, default = NA_integer_))
  # testhost3 gets a copy of the package under test (the one this run loads).
  package <- tryCatch(find.package("parallelly"), error = function(e) "")
  out <- withr::with_envvar(c(SSH_TEST_HOSTS_OWNER_PID = Sys.getpid(), SSH_TEST_HOSTS_PORT = port,
                              SSH_TEST_HOSTS_PACKAGE = package),
    suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir), n),
                             stdout = TRUE, stderr = TRUE)))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L) {
    msg <- paste0("starting the SSH test hosts failed (exit status ", status, "):\n",
                  paste(out, collapse = "\n"))
    .ssh_test_hosts_cache$error <- msg  # do not retry in every test
    unlink(dir, recursive = TRUE)
    stop(msg, call. = FALSE)
  }

  hosts <- list(
    dir = normalizePath(dir),
    config = file.path(normalizePath(dir), "ssh_config"),
    known_hosts = file.path(normalizePath(dir), "known_hosts"),
    identity = file.path(normalizePath(dir), "id_ed25519"),
    identity_other = file.path(normalizePath(dir), "id_ed25519_other"),
    hosts = utils::read.delim(file.path(dir, "hosts.tsv"), colClasses = c("character",
                              "character", "integer", "integer", "character", "character",
                              "character")),
    pidns = readLines(file.path(dir, "pidns"), warn = FALSE)[1L],
    script = script
  )
  .ssh_test_hosts_cache$hosts <- hosts
  registered <- tryCatch({
    withr::defer(ssh_test_hosts_stop(), envir = testthat::teardown_env())
    TRUE
  }, error = function(e) FALSE)
  # Outside a test run (no teardown environment): stop them when R exits.
  if (!registered) reg.finalizer(.ssh_test_hosts_cache, function(e) ssh_test_hosts_stop(),
                                 onexit = TRUE)
  if (identical(hosts$pidns, "shared"))
    message("SSH test hosts run in this machine's PID space (unshare refused): ",
            "tests that need separate PID namespaces are skipped")
  hosts
}

# Skip unless the SSH test hosts run (root, /usr/sbin/sshd, and a successful start); returns
# the hosts (see ssh_test_hosts()) invisibly.
skip_if_no_ssh_hosts <- function(n = ssh_test_hosts_n) {
  why <- ssh_test_hosts_missing()
  if (nzchar(why)) skip_unavailable("SSH test hosts", why)
  hosts <- tryCatch(ssh_test_hosts(n), error = function(e) e)
  if (inherits(hosts, "error")) skip_unavailable("SSH test hosts", conditionMessage(hosts))
  invisible(hosts)
}

# Skip when the hosts share this machine's PID space (so a remote PID is also a local one).
skip_if_shared_pidns <- function(hosts = ssh_test_hosts()) {
  if (identical(hosts$pidns, "shared"))
    testthat::skip(paste("SSH test hosts share this machine's PID namespace",
                         "(unshare --pid refused here)"))
  invisible(hosts)
}

# The PID, as seen from here, of the init process of `host`'s namespaces (its sshd): the child
# of the recorded unshare process. With a shared PID space, the recorded sshd itself.
ssh_host_init_pid <- function(host, hosts = ssh_test_hosts()) {
  row <- hosts$hosts[hosts$hosts$name == host, , drop = FALSE]
  if (nrow(row) != 1L) stop("no SSH test host named ", sQuote(host), call. = FALSE)
  pid <- row$pid
  if (identical(hosts$pidns, "shared")) return(pid)
  children <- unlist(lapply(Sys.glob(sprintf("/proc/%d/task/*/children", pid)), function(f) {
    scan(f, what = integer(), quiet = TRUE)
  }))
  if (length(children) == 0L) {
    # No children files: find the child by the ppid field of /proc/*/stat.
    for (stat in Sys.glob("/proc/[0-9]*/stat")) {
      line <- tryCatch(readLines(stat, warn = FALSE)[1L], error = function(e) NA_character_)
      if (is.na(line)) next
      fields <- strsplit(sub("^.*\\) ", "", line), " ")[[1L]]
      if (identical(as.integer(fields[2L]), pid)) children <- c(children, as.integer(basename(dirname(stat))))
    }
  }
  if (length(children) == 0L) stop("SSH test host ", host, " (unshare ", pid, ") is not running",
                                   call. = FALSE)
  children[1L]
}

# Run `command` with sh as root inside `host`'s PID, UTS and mount namespaces (no ssh client
# involved; it sees the host's private /tmp and HOME). Returns the stdout lines; an error if the command
# fails, unless error = FALSE (then attribute "status" holds the exit status). Output goes
# through a file, so commands may leave background processes behind ("sleep 30 & echo $!").
remote_exec <- function(host, command, error = TRUE, hosts = ssh_test_hosts()) {
  init <- ssh_host_init_pid(host, hosts)
  out <- tempfile()
  err <- tempfile()
  on.exit(unlink(c(out, err)), add = TRUE)
  if (identical(hosts$pidns, "shared")) {
    status <- system2("sh", c("-c", shQuote(command)), stdout = out, stderr = err)
  } else {
    # --root and --wd: entering a mount namespace resets the root to the namespace's own,
    # which in a chroot (the R 4.6 run) is the machine's root, not the host's.
    status <- system2("nsenter", c("--target", init, "--pid", "--uts", "--mount", "--root", "--wd",
                                   "sh", "-c", shQuote(command)), stdout = out, stderr = err)
  }
  lines <- readLines(out, warn = FALSE)
  if (error && status != 0L)
    stop(sprintf("remote_exec(%s, %s) failed with exit status %d: %s", host, sQuote(command),
                 status, paste(readLines(err, warn = FALSE), collapse = "\n")), call. = FALSE)
  if (!error) attr(lines, "status") <- status
  lines
}

# Point our SSH client at the test hosts for the duration of the calling test.
local_ssh_env <- function(hosts = ssh_test_hosts(), envir = parent.frame()) {
  withr::local_envvar(c(R_PARALLELLY_SSH_CONFIG = hosts$config,
                        R_PARALLELLY_SSH_KNOWN_HOSTS = hosts$known_hosts), .local_envir = envir)
}

# Whether a local process runs (zombies do not count), by /proc only.
ssh_local_pid_running <- function(pid) {
  stat <- file.path("/proc", pid, "stat")
  line <- tryCatch(readLines(stat, warn = FALSE)[1L], error = function(e) NA_character_,
                   warning = function(w) NA_character_)
  if (is.na(line) || !nzchar(line)) return(FALSE)
  state <- strsplit(sub("^.*\\) ", "", line), " ")[[1L]][1L]
  !state %in% c("Z", "X")
}

# The local PID of the process that has PID `remote_pid` on `host` (found by the NSpid line of
# /proc/*/status among the processes of the host's PID namespace), or NA if there is none.
ssh_host_local_pid <- function(host, remote_pid, hosts = ssh_test_hosts()) {
  init <- ssh_host_init_pid(host, hosts)
  if (identical(hosts$pidns, "shared")) return(as.integer(remote_pid))
  ns <- Sys.readlink(file.path("/proc", init, "ns", "pid"))
  for (dir in Sys.glob("/proc/[0-9]*")) {
    if (!identical(Sys.readlink(file.path(dir, "ns", "pid")), ns)) next
    status <- tryCatch(readLines(file.path(dir, "status"), warn = FALSE),
                       error = function(e) character(), warning = function(w) character())
    nspid <- grep("^NSpid:", status, value = TRUE)
    if (length(nspid) != 1L) next
    ids <- as.integer(strsplit(trimws(sub("^NSpid:", "", nspid)), "[[:space:]]+")[[1L]])
    if (identical(ids[length(ids)], as.integer(remote_pid))) return(ids[1L])
  }
  NA_integer_
}

# Poll `condition` every 50 ms until it is TRUE or `timeout` seconds passed.
wait_for_ssh <- function(condition, timeout = 10) {
  deadline <- Sys.time() + timeout
  repeat {
    if (isTRUE(condition())) return(TRUE)
    if (Sys.time() >= deadline) return(FALSE)
    Sys.sleep(0.05)
  }
}

# Local PIDs of running processes whose command line contains `text` (like `pgrep -f`, but
# without a shell of our own that would match too). Zombies do not count.
ssh_pids_mentioning <- function(text) {
  pids <- integer()
  for (dir in Sys.glob("/proc/[0-9]*")) {
    cmd <- tryCatch(readBin(file.path(dir, "cmdline"), "raw", 65536L),
                    error = function(e) raw(), warning = function(w) raw())
    cmd[cmd == as.raw(0)] <- as.raw(32)
    if (length(cmd) && grepl(text, rawToChar(cmd), fixed = TRUE)) {
      pid <- as.integer(basename(dir))
      if (ssh_local_pid_running(pid)) pids <- c(pids, pid)
    }
  }
  pids
}

# PIDs of the R processes running on a test host, as the host numbers them.
remote_r_pids <- function(host, hosts = ssh_test_hosts()) {
  out <- remote_exec(host, "for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case $c in R|Rscript) echo ${p#/proc/};; esac; done",
                     hosts = hosts)
  as.integer(out)
}

# Local PIDs of every sshd process of a test host (its listener and the sessions), for
# freezing the host with SIGSTOP. Needs separate PID namespaces.
ssh_host_sshd_pids <- function(host, hosts = ssh_test_hosts()) {
  ns <- Sys.readlink(sprintf("/proc/%d/ns/pid", ssh_host_init_pid(host, hosts)))
  pids <- as.integer(basename(Sys.glob("/proc/[0-9]*")))
  pids[vapply(pids, function(p) {
    identical(Sys.readlink(sprintf("/proc/%d/ns/pid", p)), ns) &&
      # OpenSSH >= 9.8 runs sessions as sshd-session (and sshd-auth): all are the host's sshd.
      grepl("^sshd", tryCatch(readLines(sprintf("/proc/%d/comm", p), warn = FALSE), error = function(e) "")[1L])
  }, logical(1))]
}

# Skip unless our package is installed on testhost3 (the fork server's host). With the shared
# fallback (no namespaces) the hosts see this machine's libraries, as before.
skip_unless_package_on_testhost3 <- function(hosts = ssh_test_hosts()) {
  if (identical(hosts$pidns, "shared")) return(invisible(hosts))
  if (!identical(hosts$hosts$package[hosts$hosts$name == "testhost3"], "yes"))
    testthat::skip("our package is not installed on testhost3 (SSH_TEST_HOSTS_PACKAGE unset)")
  invisible(hosts)
}

# Skip unless the hosts are the realistic kind: mount namespaces of their own, login user ptest.
skip_if_not_realistic_hosts <- function(hosts = ssh_test_hosts()) {
  skip_if_shared_pidns(hosts)
  invisible(hosts)
}

# Run `command` on `host` through the system's OpenSSH client as the login user, with the
# hosts' config (NULL when no ssh client is installed). Returns the output lines, status in
# attribute "status" when it is not 0.
system_ssh <- function(host, command, hosts = ssh_test_hosts()) {
  if (!file.exists("/usr/bin/ssh")) return(NULL)
  suppressWarnings(system2("/usr/bin/ssh", c("-F", shQuote(hosts$config), "-o", "BatchMode=yes",
                                             "-o", "ConnectTimeout=10", host, shQuote(command)),
                           stdout = TRUE, stderr = TRUE))
}

# A set of `n` extra test hosts configured otherwise (`env`: SSH_TEST_HOSTS_SSHD_OPTIONS,
# SSH_TEST_HOSTS_USER, SSH_TEST_HOSTS_PASSWORD, see tools/ssh-test-hosts.sh), on a port of
# their own beside the suite's hosts; started once per run under `name`, stopped at the
# end of the run. Returns what ssh_test_hosts() returns; an error if they cannot start.
ssh_test_hosts_variant <- function(name, env, n = 1L) {
  cache <- .ssh_test_hosts_cache$variants
  if (is.null(cache)) cache <- .ssh_test_hosts_cache$variants <- new.env(parent = emptyenv())
  if (!is.null(cache[[name]])) return(cache[[name]])
  ssh_test_hosts()  # the suite's hosts first (the variants' stop is registered with them)
  script <- ssh_test_hosts_script()
  dir <- tempfile(paste0("ssh-test-hosts-", name, "-"))
  port <- as.character(parallelly::freePort(22000:29999, default = NA_integer_))
  out <- withr::with_envvar(c(SSH_TEST_HOSTS_OWNER_PID = Sys.getpid(), SSH_TEST_HOSTS_PORT = port, env),
    suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir), n),
                             stdout = TRUE, stderr = TRUE)))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L) {
    unlink(dir, recursive = TRUE)
    stop("starting the SSH test hosts '", name, "' failed:\n", paste(out, collapse = "\n"), call. = FALSE)
  }
  dir <- normalizePath(dir)
  hosts <- list(
    dir = dir, config = file.path(dir, "ssh_config"), known_hosts = file.path(dir, "known_hosts"),
    identity = file.path(dir, "id_ed25519"), identity_other = file.path(dir, "id_ed25519_other"),
    hosts = utils::read.delim(file.path(dir, "hosts.tsv"), colClasses = c("character",
                              "character", "integer", "integer", "character", "character", "character")),
    pidns = readLines(file.path(dir, "pidns"), warn = FALSE)[1L], script = script
  )
  cache[[name]] <- hosts
  stop_it <- function() {
    suppressWarnings(system2("bash", c(shQuote(script), "stop", shQuote(dir)), stdout = TRUE, stderr = TRUE))
    rm(list = name, envir = cache)
  }
  registered <- tryCatch({
    withr::defer(stop_it(), envir = testthat::teardown_env())
    TRUE
  }, error = function(e) FALSE)
  if (!registered) reg.finalizer(cache, function(e) stop_it(), onexit = TRUE)
  hosts
}

# Run `code` (a string of R code) with the reference package (parallelly 1.34, Debian's, in
# /usr/lib/R/site-library) in a fresh R process with `env` set; its output lines, with
# attribute "status" when it failed. NULL when the reference is not installed.
run_reference <- function(code, env = character(), timeout = 120) {
  lib <- "/usr/lib/R/site-library"
  if (!file.exists(file.path(lib, "parallelly", "DESCRIPTION"))) return(NULL)
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c(
    "library(parallelly)",
    "if (packageVersion('parallelly') >= '2.0.0') stop('not the reference: ', find.package('parallelly'))",
    code), script)
  withr::with_envvar(c(R_LIBS = lib, R_LIBS_USER = "", env),
    suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), shQuote(script),
                             stdout = TRUE, stderr = TRUE, timeout = timeout)))
}
