# A call that fails because one worker died must not leave its other results behind for
# the next call (base parallel hands them to the next call as if they were its own).

test_that("the next call after a crash gets its own results, not stale ones", {
  cl <- local_cluster(2)
  crash_first <- function(i) {
    if (i == 1L) tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(0.2)
    i * 10
  }
  # Worker 1 dies; worker 2's result (20) is never read by the failing call.
  expect_error(parallel::parLapply(cl, 1:2, crash_first))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))
  expect_equal(unlist(parallel::clusterEvalQ(cl, "fresh")), c("fresh", "fresh"))
})

test_that("load-balanced calls after a crash get their own results too", {
  cl <- local_cluster(2)
  expect_error(parallel::parLapplyLB(cl, 1:2, function(i) {
    if (i == 1L) tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(0.5)
    -i
  }))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_equal(unlist(parallel::parLapplyLB(cl, 1:6, function(x) x * 2)), (1:6) * 2)
  expect_equal(unlist(parallel::parSapply(cl, 1:4, identity)), 1:4)
})

test_that("an interrupted call does not leak results into the next one", {
  cl <- local_cluster(2)
  # Results owed by an abandoned call: send, never receive.
  for (node in cl) parallel:::sendCall(node, fun = function() "old", args = list())
  expect_equal(unlist(parallel::clusterEvalQ(cl, "new")), c("new", "new"))
})
