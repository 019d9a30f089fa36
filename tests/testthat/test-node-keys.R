# A worker's key in the package's tables always names its host, so that workers of two hosts
# with the same PID never stand for each other (e.g. one's end marking the other as ended).

test_that("workers of an external SSH client on two hosts have keys naming each host", {
  hosts <- skip_if_no_ssh_hosts(2L)
  skip_if(!nzchar(Sys.which("ssh")), "no ssh client installed")
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost2"), rshcmd = "ssh",
                      rshopts = c("-F", hosts$config, "-o", "BatchMode=yes"))
  keys <- vapply(unclass(cl), parallelly:::node_key, "")
  expect_match(keys[1], "testhost1", fixed = TRUE)
  expect_match(keys[2], "testhost2", fixed = TRUE)
  expect_false(any(grepl("^localhost/", keys)))
  # Ending one does not end the other, and stopCluster() still stops the other.
  parallelly:::mark_node_ended(cl[[1]], "killed")
  expect_false(parallelly:::node_ended(cl[[2]]))
  pid2 <- node_pid(cl[[2]])
  expect_true(pid2 %in% remote_r_pids("testhost2"))
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !pid2 %in% remote_r_pids("testhost2"), timeout = 10))
})

test_that("local and built-in SSH workers' keys name their host too", {
  cl <- local_cluster(1)
  expect_match(parallelly:::node_key(cl[[1]]), "^localhost/[0-9]+@[0-9]+$")
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  rc <- local_cluster("testhost1")
  # The held connection's user@address:port.
  expect_match(parallelly:::node_key(rc[[1]]), sprintf("@%s:%s/", hosts$hosts$address[1], hosts$hosts$port[1]), fixed = TRUE)
})
