# ServerAliveInterval with ServerAliveCountMax on the built-in client: a host that stops
# answering (a partition) is declared dead within interval x (count + 1), as OpenSSH does.

test_that("ServerAliveCountMax: a partitioned host's connection is declared dead within interval x (count + 1)", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_no_iptables()
  local_ssh_env(hosts)
  withr::local_options(parallelly.ssh.client = "built-in")
  cl <- local_cluster(rep("testhost1", 2), rshopts = c("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"))
  expect_identical(isNodeAlive(cl, timeout = 5), c(TRUE, TRUE))
  # A quiet connection with keepalives answered stays up.
  Sys.sleep(4)
  conns <- parallelly:::backend_ssh_connections()
  expect_true(all(conns$alive))
  # Cut the host off: no answer, no error, no FIN.
  heal <- local_partition("testhost1", hosts)
  t0 <- Sys.time()
  expect_true(wait_for(function() !any(parallelly:::backend_ssh_connections()$alive), timeout = 15))
  took <- as.double(difftime(Sys.time(), t0, units = "secs"))
  # The next keepalive within 1 s, then 2 x 1 s without an acknowledgement.
  expect_gt(took, 1.8)
  expect_lt(took, 3 + 1.5)
  conns <- parallelly:::backend_ssh_connections()
  expect_match(conns$error, "ServerAliveInterval 1, ServerAliveCountMax 2", fixed = TRUE)
  # Its nodes read NA (reconnecting to the frozen host times out), a worker read fails naming the host.
  res <- suppressWarnings(isNodeAlive(cl, timeout = 1))
  expect_true(all(is.na(res)))
  err <- tryCatch(parallel::clusterEvalQ(cl, 1), error = identity)
  expect_s3_class(err, "error")
  expect_s3_class(err, "parallellySshError")
  expect_match(conditionMessage(err), "host 'testhost1'.*lost.*ServerAliveCountMax 2")
  heal()
})
