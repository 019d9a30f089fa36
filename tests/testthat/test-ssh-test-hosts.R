# The SSH test hosts themselves (tools/ssh-test-hosts.sh, helper-sshd.R): every remote test
# relies on these properties, so they are checked first and without our SSH client.

test_that("the SSH test hosts answer with an OpenSSH banner on their own addresses", {
  hosts <- skip_if_no_ssh_hosts(2)
  expect_true(hosts$pidns %in% c("separate", "shared"))
  expect_equal(hosts$hosts$name[1:2], c("testhost1", "testhost2"))
  expect_equal(hosts$hosts$address[1:2], c("127.0.0.2", "127.0.0.3"))
  for (i in 1:2) {
    con <- socketConnection(hosts$hosts$address[i], hosts$hosts$port[i], blocking = TRUE,
                            open = "r+", timeout = 5)
    banner <- readLines(con, n = 1L)
    close(con)
    expect_match(banner, "^SSH-2.0-OpenSSH")
  }
})

test_that("the files for the SSH client are in place", {
  hosts <- skip_if_no_ssh_hosts(2)
  for (f in c(hosts$config, hosts$known_hosts, hosts$identity, hosts$identity_other,
              paste0(hosts$identity, ".pub"), file.path(hosts$dir, "authorized_keys"))) {
    expect_true(file.exists(f), info = f)
  }
  known <- readLines(hosts$known_hosts)
  port <- hosts$hosts$port[1]
  expect_true(any(grepl(sprintf("^\\[127\\.0\\.0\\.2\\]:%s ssh-ed25519 AAAA", port), known)))
  expect_true(any(grepl(sprintf("^\\[testhost1\\]:%s ssh-ed25519 AAAA", port), known)))
  authorized <- readLines(file.path(hosts$dir, "authorized_keys"))
  expect_equal(authorized, readLines(paste0(hosts$identity, ".pub")))
  expect_false(readLines(paste0(hosts$identity_other, ".pub")) %in% authorized)
  config <- readLines(hosts$config)
  expect_true("Host testhost1" %in% config)
  expect_true("  HostName 127.0.0.2" %in% config)

  local_ssh_env(hosts)
  expect_equal(Sys.getenv("R_PARALLELLY_SSH_CONFIG"), hosts$config)
  expect_equal(Sys.getenv("R_PARALLELLY_SSH_KNOWN_HOSTS"), hosts$known_hosts)
})

test_that("remote_exec() runs on the host: its own hostname and its own PID 1", {
  hosts <- skip_if_no_ssh_hosts(2)
  skip_if_shared_pidns(hosts)
  expect_equal(remote_exec("testhost1", "hostname"), "testhost1")
  expect_equal(remote_exec("testhost2", "hostname"), "testhost2")
  # PID 1 there is the host's sshd, not this machine's init.
  expect_equal(remote_exec("testhost1", "cat /proc/1/comm"), "sshd")
  expect_match(remote_exec("testhost1", "tr '\\0' ' ' </proc/1/cmdline"),
               "sshd_config_testhost1", fixed = TRUE)
  local_init <- readBin("/proc/1/cmdline", "raw", 4096L)
  expect_false(grepl("sshd_config_testhost1", rawToChar(local_init[local_init != as.raw(0)]),
                     fixed = TRUE))
  # The host's view of a shell's PID is small: it counts from the host's own PID 1.
  expect_lt(as.integer(remote_exec("testhost1", "echo $$")), 10000L)
  # Only the host's processes are visible there (other tests may have left some of their own).
  ps <- remote_exec("testhost1", "ps -eo pid=,comm=")
  pids <- as.integer(sub("^ *([0-9]+) .*$", "\\1", ps))
  expect_equal(sub("^ *[0-9]+ +", "", ps[pids == 1L]), "sshd")
  expect_lt(length(ps), length(Sys.glob("/proc/[0-9]*")))
})

test_that("a PID on a host is not the same process locally", {
  hosts <- skip_if_no_ssh_hosts(2)
  skip_if_shared_pidns(hosts)
  remote_pid <- as.integer(remote_exec("testhost1", "sleep 30 & echo $!"))
  withr::defer(remote_exec("testhost1", paste("kill", remote_pid, "2>/dev/null || true")))
  expect_true(is.finite(remote_pid))
  expect_match(remote_exec("testhost1", sprintf("tr '\\0' ' ' </proc/%d/cmdline", remote_pid)),
               "^sleep 30")
  # Locally, that PID is another process or none at all ...
  local_cmd <- tryCatch(readBin(file.path("/proc", remote_pid, "cmdline"), "raw", 4096L),
                        error = function(e) raw(), warning = function(w) raw())
  local_cmd <- rawToChar(local_cmd[local_cmd != as.raw(0)])
  expect_false(identical(local_cmd, "sleep30"), info = local_cmd)
  # ... while the sleep has a different PID here.
  local_pid <- ssh_host_local_pid("testhost1", remote_pid, hosts)
  expect_false(is.na(local_pid))
  expect_false(identical(local_pid, remote_pid))
  expect_true(ssh_local_pid_running(local_pid))
  # Killing the remote PID from here must not be what stops it: kill it there.
  remote_exec("testhost1", paste("kill", remote_pid))
  expect_true(wait_for_ssh(function() !ssh_local_pid_running(local_pid), 5))
})

test_that("the unauthorized key is refused and the authorized one accepted (system ssh)", {
  hosts <- skip_if_no_ssh_hosts(2)
  skip_if_not(file.exists("/usr/bin/ssh"), "the ssh client is not installed")
  ok <- suppressWarnings(system2("/usr/bin/ssh", c("-F", shQuote(hosts$config), "-o",
                                 "BatchMode=yes", "testhost2", shQuote("hostname")),
                                 stdout = TRUE, stderr = TRUE))
  expect_null(attr(ok, "status"))
  if (hosts$pidns == "separate") expect_equal(ok, "testhost2")
  refused <- suppressWarnings(system2("/usr/bin/ssh", c(
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", shQuote(hosts$identity_other),
    "-o", paste0("UserKnownHostsFile=", shQuote(hosts$known_hosts)),
    "-o", "StrictHostKeyChecking=yes", "-p", hosts$hosts$port[2], paste0(hosts$hosts$user[2], "@127.0.0.3"), "true"),
    stdout = TRUE, stderr = TRUE))
  expect_equal(attr(refused, "status"), 255L)
  expect_match(paste(refused, collapse = "\n"), "Permission denied")
})

test_that("stop leaves no sshd and no host process behind; start again works", {
  hosts <- skip_if_no_ssh_hosts(2)
  # A set of its own on another port, so that the shared hosts keep running.
  port <- parallelly::freePort(22000:29999, default = NA_integer_)
  withr::local_envvar(SSH_TEST_HOSTS_PORT = as.character(port), SSH_TEST_HOSTS_OWNER_PID = Sys.getpid())
  dir <- tempfile("ssh-test-hosts-stop-")
  script <- hosts$script
  run <- function(...) suppressWarnings(system2("bash", c(shQuote(script), ...),
                                                stdout = TRUE, stderr = TRUE))
  withr::defer(if (dir.exists(dir)) run("stop", shQuote(dir)))

  for (round in 1:2) {
    out <- run("start", shQuote(dir), 2)
    expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
    tsv <- utils::read.delim(file.path(dir, "hosts.tsv"))
    expect_equal(tsv$port, c(port, port))
    pids <- tsv$pid
    expect_true(all(vapply(pids, ssh_local_pid_running, logical(1))))
    # Everything that runs for these hosts: the recorded PIDs, their children (the sshd) and,
    # with PID namespaces, a process left on a host by a session.
    own <- list(dir = dir, hosts = tsv, pidns = readLines(file.path(dir, "pidns")))
    inits <- vapply(tsv$name, ssh_host_init_pid, integer(1), hosts = own)
    all_pids <- unique(c(pids, inits))
    if (own$pidns == "separate") {
      remote <- as.integer(remote_exec("testhost2", "sleep 60 & echo $!", hosts = own))
      all_pids <- c(all_pids, ssh_host_local_pid("testhost2", remote, hosts = own))
    }
    expect_true(all(vapply(all_pids, ssh_local_pid_running, logical(1))))
    watchdog <- as.integer(readLines(file.path(dir, "watchdog.pid")))
    expect_true(ssh_local_pid_running(watchdog))

    out <- run("stop", shQuote(dir))
    expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
    expect_false(dir.exists(dir))
    expect_true(wait_for_ssh(function() {
      !any(vapply(c(all_pids, watchdog), ssh_local_pid_running, logical(1)))
    }, 5))
    expect_length(ssh_pids_mentioning(dir), 0L)
    con <- tryCatch(socketConnection("127.0.0.2", port, blocking = TRUE, open = "r+",
                                     timeout = 1), error = function(e) NULL,
                    warning = function(w) NULL)
    expect_null(con)
    if (!is.null(con)) close(con)
  }
  # Stopping again is harmless.
  out <- run("stop", shQuote(dir))
  expect_null(attr(out, "status"))
})

test_that("the hosts look like remote machines: own /tmp and HOME, a user, no package of ours", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if_not(file.exists("/usr/bin/ssh"), "the ssh client is not installed")
  expect_equal(hosts$hosts$user, rep("ptest", nrow(hosts$hosts)))
  # A file in this machine's /tmp is not on the host; one in the host's /tmp is not here.
  mine <- tempfile("here-", tmpdir = "/tmp")
  writeLines("x", mine)
  withr::defer(unlink(mine))
  expect_identical(remote_exec("testhost1", sprintf("test -e %s && echo yes || echo no", mine)), "no")
  theirs <- remote_exec("testhost1", "f=$(mktemp /tmp/there-XXXXXX); echo $f")
  expect_false(file.exists(theirs))
  expect_identical(remote_exec("testhost2", sprintf("test -e %s && echo yes || echo no", theirs)), "no")
  out <- system_ssh("testhost1", "id -un; echo $HOME; df -P $HOME /tmp | awk 'NR > 1 { print $1 }'")
  expect_null(attr(out, "status"))
  expect_identical(out, c("ptest", "/home/ptest", "tmpfs", "tmpfs"))
  # R there sees base R and Debian's packages only: the reference parallelly 1.34, not ours.
  rcode <- "cat(.libPaths(), sep = '\\n'); cat(format(packageVersion('parallelly')), '\\n')"
  out <- system_ssh("testhost1", sprintf("Rscript -e \"%s\"", rcode))
  expect_null(attr(out, "status"))
  expect_false(any(startsWith(out, "/home/ptest/")))
  expect_false(identical(trimws(out[length(out)]), format(packageVersion("parallelly"))))
  expect_identical(remote_exec("testhost1", "ls -A /usr/local/lib/R/site-library | wc -l"), "0")
  # testhost3 has ours in the user's own library.
  out <- system_ssh("testhost3", sprintf("Rscript -e \"%s\"", rcode))
  expect_null(attr(out, "status"))
  expect_identical(trimws(out[length(out)]), format(packageVersion("parallelly")))
  expect_true(any(startsWith(out, "/home/ptest/")))
})

test_that("the login shells are bash, dash, tcsh and fish, as hosts.tsv says", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  shells <- setNames(hosts$hosts$shell, hosts$hosts$name)
  expect_identical(unname(shells[c("testhost1", "testhost4", "testhost5", "testhost6")]),
                   c("/bin/bash", "/usr/bin/dash", "/usr/bin/tcsh", "/usr/bin/fish"))
  for (h in c("testhost1", "testhost4", "testhost5", "testhost6")) {
    # The shell sshd runs for the user, as that host's passwd says.
    expect_identical(remote_exec(h, "getent passwd ptest | cut -d: -f7"), shells[[h]], info = h)
  }
  skip_if_not(file.exists("/usr/bin/ssh"), "the ssh client is not installed")
  out <- system_ssh("testhost5", "echo $shell")
  expect_identical(out, "/usr/bin/tcsh")
})

test_that("testhost7's /tmp is full", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  expect_identical(remote_exec("testhost7", "df -P /tmp | awk 'NR == 2 { print $4 }'"), "0")
  expect_identical(remote_exec("testhost1", "df -P /tmp | awk 'NR == 2 { print ($4 > 1000) }'"), "1")
})
