# Workers that cannot start on a host: the error says what happened there -- a full or
# unwritable temporary directory (testhost7's /tmp is a full 64 KiB tmpfs), or the worker's
# exit status -- and which port the worker was to connect to.

test_that("a host whose /tmp is full: the error says so at once, with or without outfile", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  local_ssh_env(hosts)
  for (outfile in list("/dev/null", NULL)) {
    t0 <- Sys.time()
    err <- tryCatch(makeClusterPSOCK(rep("testhost7", 2), outfile = outfile, connectTimeout = 20),
                    error = identity)
    expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 10)
    expect_s3_class(err, "parallellyLaunchError")
    expect_identical(err$host, "testhost7")
    expect_identical(err$directory, "/tmp")
    expect_match(conditionMessage(err), "host 'testhost7': its directory '/tmp' is full or not writable", fixed = TRUE)
    expect_length(remote_r_pids("testhost7"), 0L)
    expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  }
  # Not a false alarm: a host with room in /tmp passes the check.
  cl <- local_cluster("testhost1")
  expect_true(isNodeAlive(cl[[1]]))
  # The check leaves no file behind.
  expect_identical(remote_exec("testhost1", "ls -A /tmp /home/ptest | grep -c parallelly-check || true"), "0")
})

test_that("a remote worker that dies at start-up: its exit status and the tunnel's port", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  err <- tryCatch(makeClusterPSOCK("testhost1", rscript_startup = "quit(save = 'no', status = 3)",
                                   connectTimeout = 20), error = identity)
  expect_s3_class(err, "parallellyLaunchError")
  expect_identical(err$exit, "exited with status 3")
  msg <- conditionMessage(err)
  expect_match(msg, "exited with status 3 before it connected to the master through the reverse tunnel (port ", fixed = TRUE)
  ports <- as.integer(regmatches(msg, regexec("port ([0-9]+) on that host, port ([0-9]+) here", msg))[[1]][2:3])
  expect_false(anyNA(ports))
  expect_false(ports[1] == ports[2])
  err <- tryCatch(makeClusterPSOCK("testhost1", rscript_startup = "tools::pskill(Sys.getpid(), 9L)",
                                   connectTimeout = 20), error = identity)
  expect_s3_class(err, "parallellyLaunchError")
  expect_identical(err$exit, "was killed by signal 9 (SIGKILL)")
  expect_length(remote_r_pids("testhost1"), 0L)
})
