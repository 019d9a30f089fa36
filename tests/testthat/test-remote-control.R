# The control path of a held SSH connection: a script that hangs on the host (a `tail` or
# `rm -rf` on a stuck file system, here a `sleep` or a read on a FIFO) runs on a channel of
# its own, so probes, kills and launches on that host never queue behind it; and a script
# that is withdrawn or runs out of time leaves nothing running on the host.

# Command lines of the processes on `host` that mention `text`.
remote_processes_mentioning <- function(host, text, hosts) {
  # Processes may end while we look: errors go to /dev/null before the file is opened.
  out <- remote_exec(host, "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' 2>/dev/null < $p/cmdline) && [ -n \"$c\" ] && echo \"${p#/proc/} $c\"; done; true",
                     hosts = hosts)
  grep(text, out, fixed = TRUE, value = TRUE)
}

# A script that hangs until killed: it sleeps, then (never) reads a FIFO nobody writes to.
hanging_script <- function(token, fifo) sprintf("sleep 300; read x < %s; echo %s", fifo, token)

test_that("probes and kills answer while scripts hang on the host, and withdrawn scripts end there", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1", connectTimeout = 20)
  key <- parallelly:::ssh_key_of(cl[[1]])
  token <- paste0("hang", as.integer(runif(1, 1e6, 1e7)))
  fifo <- file.path("/tmp", paste0("parallelly-fifo-", token))
  remote_exec("testhost1", sprintf("mkfifo %s && chmod 666 %s", fifo, fifo), hosts = hosts)
  withr::defer(try(remote_exec("testhost1", paste("rm -f", fifo), hosts = hosts), silent = TRUE))

  # More hanging scripts than the connection opens channels for at once (4): the rest wait.
  tickets <- lapply(1:6, function(i) {
    parallelly:::backend_value(parallelly:::backend_ssh_submit_script(key, hanging_script(paste0(token, "-", i), fifo), timeout = 120))
  })
  withr::defer(for (t in tickets) parallelly:::backend_ssh_cancel(t))
  expect_true(wait_for(function() length(remote_processes_mentioning("testhost1", token, hosts)) >= 4L, timeout = 10))

  # The control shell is free: probes and a kill answer within their timeouts.
  for (i in 1:5) expect_identical(isNodeAlive(cl[[1]], timeout = 3), TRUE)
  expect_null(parallelly:::backend_ssh_poll(tickets[[1]]))
  expect_true(killNode(cl[[1]], timeout = 3))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]], timeout = 3), FALSE), timeout = 10))

  # Withdrawing the scripts ends them on the host: their shells and their sleeps.
  for (t in tickets) parallelly:::backend_ssh_cancel(t)
  expect_true(wait_for(function() length(remote_processes_mentioning("testhost1", token, hosts)) == 0L, timeout = 10))
  expect_length(remote_processes_mentioning("testhost1", "sleep 300", hosts), 0L)

  # A script on a FIFO that runs out of time while R waits: a timeout error, and it ends.
  remote_exec("testhost1", paste("rm -f", fifo, "&& mkfifo", fifo, "&& chmod 666", fifo), hosts = hosts)
  expect_error(
    parallelly:::backend_ssh_wait(parallelly:::backend_ssh_submit_script(key, sprintf("read x < %s; echo %s-fifo", fifo, token)),
                                  1, "testhost1", "reading a FIFO"),
    class = "parallellyTimeoutError")
  expect_true(wait_for(function() length(remote_processes_mentioning("testhost1", token, hosts)) == 0L, timeout = 10))

  # One that nobody waits for or withdraws ends at its deadline, and says so.
  ticket <- parallelly:::backend_value(parallelly:::backend_ssh_submit_script(key, hanging_script(paste0(token, "-late"), fifo), timeout = 1.5))
  expect_true(wait_for(function() length(remote_processes_mentioning("testhost1", token, hosts)) == 1L, timeout = 5))
  expect_true(wait_for(function() length(remote_processes_mentioning("testhost1", token, hosts)) == 0L, timeout = 10))
  expect_error(parallelly:::backend_ssh_wait(ticket, 5, "testhost1", "a late script"), class = "parallellyTimeoutError")

  # Scripts still work, answer with their output only, and the connection is intact.
  out <- parallelly:::backend_ssh_wait(parallelly:::backend_ssh_submit_script(key, "echo one; echo two >&2; exit 3"),
                                       10, "testhost1", "running a script")
  expect_identical(strsplit(out, "\n")[[1]], c("one", "two"))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_identical(isNodeAlive(cl[[1]], timeout = 3), TRUE)
  expect_length(remote_processes_mentioning("testhost1", "sleep 300", hosts), 0L)
})

test_that("scripts run on hosts whose login shell is dash, tcsh or fish", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  for (host in c("testhost4", "testhost5", "testhost6")) {
    s <- parallelly:::resolve_ssh_settings(NULL, NULL)
    res <- parallelly:::backend_ssh_connect(host, config = s$config, known_hosts = s$known_hosts, timeout = 10)
    out <- parallelly:::backend_ssh_wait(
      parallelly:::backend_ssh_submit_script(res$key, "x='a b'; printf '%s|%s\\n' \"$x\" \"$(echo \"it's\")\""),
      10, host, "running a script")
    parallelly:::backend_ssh_close(res$key)
    expect_identical(out, "a b|it's\n", info = host)
  }
})

test_that("each kind of request answers in its one shape", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  s <- parallelly:::resolve_ssh_settings(NULL, NULL)
  key <- parallelly:::backend_ssh_connect("testhost1", config = s$config, known_hosts = s$known_hosts, timeout = 10)$key
  withr::defer(parallelly:::backend_ssh_close(key))
  h <- "testhost1"
  log <- sprintf("/tmp/parallelly-shape-%d.log", Sys.getpid())
  l <- parallelly:::backend_ssh_launch(key, "sleep", "exec sleep 300", log, 10, h)
  expect_type(l$pid, "integer")
  expect_length(l$pid, 1L)
  expect_identical(parallelly:::backend_ssh_probe(key, c(l$pid, 999999L), c(l$start_time, 0), 5, h), c(TRUE, FALSE))
  u <- parallelly:::backend_ssh_usage(key, l$pid, 5, h)
  expect_gt(u$rss, 0)
  expect_identical(parallelly:::backend_ssh_signal(key, l$pid, l$start_time, tools::SIGKILL, 5, h), TRUE)
  expect_true(wait_for(function() identical(parallelly:::backend_ssh_probe(key, l$pid, l$start_time, 5, h), FALSE)))
  expect_identical(parallelly:::backend_ssh_exit_status(key, l$pid, 5, h), 137L)
  expect_identical(parallelly:::backend_ssh_run(key, paste("rm -f", log, "&& echo removed"), 5, h), "removed\n")
  expect_type(parallelly:::backend_ssh_forward(key, 12345L, 5, h), "integer")
  expect_error(parallelly:::ssh_shaped("x", is.logical, h, "probing"), class = "parallellySshError")
})
