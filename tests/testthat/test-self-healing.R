# Self-healing: autoRestart relaunches dead nodes on their next use, retries re-runs the task
# a worker held when it died; both within their budgets, never looping.

crash_once <- function(x, flag) {
  if (x == 4 && !file.exists(flag)) {
    file.create(flag)
    tools::pskill(Sys.getpid(), tools::SIGKILL)
  }
  x
}

crash_always <- function(x) {
  if (x == 4) tools::pskill(Sys.getpid(), tools::SIGKILL)
  x
}

test_that("retries = 1: an element that kills its worker once is re-run; results in order", {
  cl <- local_cluster(2, retries = 1)
  flag <- withr::local_tempfile()
  expect_identical(unlist(parallel::parLapplyLB(cl, 1:6, crash_once, flag = flag)), 1:6)
  expect_true(file.exists(flag))
  expect_identical(sum(summary(cl)$restarts), 1L)
  unlink(flag)
  expect_identical(unlist(parallel::parLapply(cl, 1:6, crash_once, flag = flag)), 1:6)
  expect_identical(sum(summary(cl)$restarts), 2L)
  unlink(flag)
  expect_identical(unlist(parallel::clusterApply(cl, 1:6, crash_once, flag = flag)), 1:6)
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
})

test_that("an element that always kills its worker fails within the budget; the cluster stays usable", {
  cl <- local_cluster(2, retries = 1)
  err <- tryCatch(parallel::parLapplyLB(cl, 1:6, crash_always), error = function(e) e)
  expect_s3_class(err, "parallellyCrashError")
  expect_s3_class(err, "parallellyError")
  expect_match(conditionMessage(err), "crash", fixed = TRUE)
  expect_match(conditionMessage(err), "^Task #[0-9]+ crashed its worker 2 times")
  expect_match(conditionMessage(err), "killed by signal 9 (SIGKILL)", fixed = TRUE)
  expect_length(err$causes, 2L)
  # Two launches for the task (first run + one retry), plus one to leave the cluster usable.
  expect_identical(sum(summary(cl)$restarts), 2L)
  expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))
})

test_that("autoRestart relaunches a dead node on its next use, at most N times", {
  cl <- local_cluster(1, autoRestart = 2)
  pids <- integer(0)
  for (round in 1:3) {
    pids <- c(pids, parallel::clusterEvalQ(cl, Sys.getpid())[[1]])
    tools::pskill(pids[round], tools::SIGKILL)
    expect_true(wait_for(function() identical(isNodeAlive(cl), FALSE)))
  }
  # Each death was repaired on the next call (new PIDs) until the budget of two relaunches
  # was used up.
  expect_error(parallel::clusterEvalQ(cl, 1), "budget", class = "parallellyError")
  expect_length(unique(pids), 3L)
  expect_identical(summary(cl)$restarts, 2L)
  # repairCluster() still relaunches it.
  cl <- repairCluster(cl)
  expect_identical(parallel::clusterEvalQ(cl, 1)[[1]], 1)
})

test_that("without autoRestart or retries, a dead node stays dead (as in base parallel)", {
  cl <- local_cluster(1)
  tools::pskill(node_pid(cl[[1]]), tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl), FALSE)))
  expect_error(parallel::clusterEvalQ(cl, 1))
  expect_identical(summary(cl)$restarts, 0L)
})

test_that("plan(cluster) with autoRestart keeps working after a worker dies under a future", {
  skip_if_not_installed("future")
  cl <- local_cluster(2, autoRestart = TRUE)
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  f <- future::future({ Sys.sleep(30); 1 })
  Sys.sleep(0.5)
  tools::pskill(cluster_pids(cl), tools::SIGKILL)
  # future 1.75 reports the death as an interrupt (naming the worker's PID) and relaunches the
  # worker itself with cloneNode(); older future gives our post-mortem and we relaunch.
  expect_error(future::value(f), "no longer alive|interrupted \\(pid [0-9]+\\)")
  expect_identical(future::value(future::future(2)), 2)
  expect_identical(unlist(future::value(lapply(1:4, function(i) future::future(i)))), 1:4)
})

test_that("plan(cluster) with autoRestart survives a remote worker dying under a future", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_installed("future")
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"), autoRestart = TRUE)
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  f <- future::future({ Sys.sleep(30); Sys.info()[["nodename"]] })
  Sys.sleep(0.5)
  expect_identical(killNode(cl, signal = tools::SIGKILL), c(TRUE, TRUE))
  err <- tryCatch(future::value(f), error = identity)
  expect_s3_class(err, "error")
  expect_identical(future::value(future::future(Sys.info()[["nodename"]])), "testhost1")
  # future 1.75 relaunches an interrupted future's worker itself (cloneNode() of our node,
  # in its own copy of the cluster); with older future our autoRestart did it.
  if (!inherits(err, "FutureInterruptError"))
    expect_identical(sum(summary(cl)$restarts) >= 1L, TRUE)
})

test_that("after an in-place relaunch a node's fields describe the live worker", {
  cl <- local_cluster(1, autoRestart = 2)
  old_pid <- cl[[1]]$session_info$process$pid
  old_con <- cl[[1]]$con
  before <- serialize(cl, NULL)
  tools::pskill(old_pid, tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  new_pid <- parallel::clusterEvalQ(cl, Sys.getpid())[[1]]
  expect_false(new_pid == old_pid)
  # What users and future read from the node: the relaunched worker, not the dead one.
  expect_identical(cl[[1]]$session_info$process$pid, new_pid)
  expect_identical(cl[[1]][["session_info"]]$process$pid, new_pid)
  expect_identical(summary(cl)$pid, new_pid)
  expect_false(identical(as.integer(cl[[1]]$con), -1L))
  expect_true(isConnectionValid(cl[[1]]$con))
  expect_length(socketSelect(list(cl[[1]]$con), timeout = 0), 1L)
  # The node object is unchanged (future identifies clusters by hashing them).
  expect_identical(serialize(cl, NULL), before)
})

test_that("stopping prunes a node's bookkeeping; the dead worker's connection reads as invalid", {
  cl <- makeClusterPSOCK(2, autoRestart = 1)
  on.exit(parallelly:::stop_all_children())
  old_con <- cl[[1]]$con
  tools::pskill(node_pid(cl[[1]]), tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  expect_length(parallel::clusterEvalQ(cl, 1), 2L)
  # The connection the user held is the dead worker's: closed, not valid; the node's is.
  expect_false(isConnectionValid(old_con))
  expect_true(isConnectionValid(cl[[1]]$con))
  keys <- c(vapply(unclass(cl), parallelly:::node_key, ""), parallelly:::node_key(parallelly:::current_node(cl[[1]])))
  tables <- c("node_states", "incarnations", "lineages", "exit_causes")
  held <- function() unlist(lapply(tables, function(t) intersect(keys, ls(parallelly:::.package[[t]]))))
  expect_true(length(held()) > 0L)
  parallel::stopCluster(cl)
  expect_identical(held(), character(0))
})
