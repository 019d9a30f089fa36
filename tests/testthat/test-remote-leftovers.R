# What workers leave on their hosts: nothing, once they are gone. A relaunched (autoRestart)
# worker's predecessor leaves no log and no R temporary directory, locally and remotely.

leftovers <- function(host, hosts) {
  remote_exec(host, "ls -d /tmp/parallelly-worker-*.log /tmp/Rtmp* 2>/dev/null; true", hosts = hosts)
}

test_that("5 autoRestarts on a remote host leave no log and no R temporary directory", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  host <- "testhost1"
  before <- leftovers(host, hosts)
  cl <- makeClusterPSOCK(host, autoRestart = 5)
  pids <- integer(0)
  for (round in 1:5) {
    pids <- c(pids, parallel::clusterEvalQ(cl, Sys.getpid())[[1]])
    # A crash (no clean-up by R, as the out-of-memory killer would do it).
    expect_error(parallel::clusterEvalQ(cl, tools::pskill(Sys.getpid(), tools::SIGKILL)))
    expect_true(wait_for(function() identical(suppressWarnings(isNodeAlive(cl)), FALSE), timeout = 15))
  }
  expect_identical(parallel::clusterEvalQ(cl, 1L)[[1]], 1L)
  expect_length(unique(pids), 5L)
  expect_identical(summary(cl)$restarts, 5L)
  # While the cluster runs, only the live worker's log and temporary directory are there.
  expect_length(setdiff(leftovers(host, hosts), before), 2L)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() length(setdiff(leftovers(host, hosts), before)) == 0L, timeout = 15),
              label = paste(setdiff(leftovers(host, hosts), before), collapse = " "))
})

test_that("autoRestart of a local worker leaves no R temporary directory of the dead one", {
  cl <- local_cluster(1, autoRestart = 3)
  tmps <- character(0)
  for (round in 1:3) {
    tmps <- c(tmps, parallel::clusterEvalQ(cl, tempdir())[[1]])
    expect_error(parallel::clusterEvalQ(cl, tools::pskill(Sys.getpid(), tools::SIGKILL)))
    expect_true(wait_for(function() identical(isNodeAlive(cl), FALSE)))
  }
  expect_identical(parallel::clusterEvalQ(cl, 1L)[[1]], 1L)
  expect_true(all(dir.exists(tmps) == FALSE), label = paste(tmps[dir.exists(tmps)], collapse = " "))
})
