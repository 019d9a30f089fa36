# A node's worker is identified by (pid, start time): a PID that now belongs to another
# process must not read as alive, and must never be signalled.

test_that("a node whose recorded start time differs reads as dead and is not signalled", {
  cl <- local_cluster(1)
  node <- cl[[1]]
  pid <- node_pid(node)
  impostor <- node
  process <- attr(impostor, "process")
  process$start_time <- process$start_time - 3600
  attr(impostor, "process") <- process
  expect_false(isNodeAlive(impostor))
  expect_false(killNode(impostor, signal = tools::SIGKILL))
  expect_true(process_running(pid))
  expect_true(isNodeAlive(node))
})

test_that("an exited worker is reaped and never reads as alive (no zombie)", {
  cl <- local_cluster(1)
  pid <- node_pid(cl[[1]])
  tools::pskill(pid, tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE), timeout = 5))
  expect_false(file.exists(file.path("/proc", pid)))
  expect_false(parallelly:::pid_exists(pid))
})

test_that("pid_exists() is TRUE for this process and FALSE for a finished one", {
  expect_true(parallelly:::pid_exists(Sys.getpid()))
  p <- parallel::mcparallel(0)
  parallel::mccollect(p)
  # The forked child exits right after delivering its result.
  expect_true(wait_for(function() identical(parallelly:::pid_exists(p$pid), FALSE)))
  expect_error(parallelly:::pid_exists(-1), "'pid'")
})
