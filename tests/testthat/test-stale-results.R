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
  # A forked helper sends us SIGINT (a Ctrl-C) while both workers are busy with the call.
  master <- Sys.getpid()
  helper <- parallel::mcparallel({ Sys.sleep(0.5); tools::pskill(master, tools::SIGINT) })
  res <- tryCatch(parallel::clusterEvalQ(cl, { Sys.sleep(1.5); "old" }),
                  interrupt = function(e) "interrupted")
  parallel::mccollect(helper)
  expect_identical(res, "interrupted")
  expect_equal(unlist(parallel::clusterEvalQ(cl, "new")), c("new", "new"))
  expect_equal(unlist(parallel::parLapply(cl, 1:4, function(x) x + 1)), 2:5)
})

test_that("tasks sent outside parallel's calls (as future does) may be pipelined", {
  cl <- local_cluster(1)
  node <- cl[[1]]
  parallel:::sendCall(node, fun = function() "first", args = list())
  parallel:::sendCall(node, fun = function() "second", args = list(), tag = "t2")
  expect_identical(parallel:::recvResult(node), "first")
  msg <- parallel:::recvData(node)
  expect_identical(msg$value, "second")
  expect_identical(msg$tag, "t2")
  # Tags of load-balanced calls come back as given.
  expect_equal(unlist(parallel::clusterApplyLB(cl, 3:1, function(x) x)), 3:1)
})

test_that("load-balanced calls on a mixed cluster still work", {
  cl <- local_cluster(1)
  base <- parallel::makePSOCKcluster(1)
  on.exit(parallel::stopCluster(base))
  mixed <- c(cl, base)
  expect_equal(unlist(parallel::parLapplyLB(mixed, 1:6, function(x) x * 3)), (1:6) * 3)
})

test_that("using a node does not change the node object (future hashes clusters)", {
  cl <- local_cluster(2)
  before <- serialize(cl, NULL)
  parallel::clusterEvalQ(cl, 1)
  parallel::parLapply(cl, 1:4, sqrt)
  parallel::parLapplyLB(cl, 1:4, sqrt)
  expect_identical(serialize(cl, NULL), before)
})

test_that("stale results are dropped whatever frames stand between the caller and parallel", {
  cl <- local_cluster(2)
  crash_first <- function(i) {
    if (i == 1L) tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(0.2)
    i * 10
  }
  # Extra frames: a subclass of our node whose sendData() method calls NextMethod(), a
  # trace()d parallel function, and a wrapper that calls parallel inside tryCatch() and local().
  sendData.tracedNode <- function(node, data) NextMethod()
  registerS3method("sendData", "tracedNode", sendData.tracedNode, envir = asNamespace("parallel"))
  for (i in seq_along(cl)) class(cl[[i]]) <- c("tracedNode", class(cl[[i]]))
  trace(parallel::clusterApply, quote(invisible(NULL)), print = FALSE)
  on.exit(untrace(parallel::clusterApply), add = TRUE)
  wrapper <- function(cl, f) tryCatch(local(parallel::parLapply(cl, 1:2, f)), error = function(e) e)
  expect_s3_class(wrapper(cl, crash_first), "error")
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_equal(unlist(wrapper(cl, function(i) -i)), -(1:2))
  expect_equal(unlist(parallel::clusterApply(cl, 1:2, function(i) i + 100)), 101:102)
})

test_that("a task's own tag comes back unchanged, NULL included", {
  cl <- local_cluster(1)
  for (tag in list(NULL, 7L, "t", list(a = 1), structure(3, extra = "x"))) {
    parallel:::sendCall(cl[[1]], fun = function() "v", args = list(), tag = tag)
    msg <- parallel:::recvData(cl[[1]])
    expect_identical(msg$tag, tag)
    expect_true("tag" %in% names(msg))
  }
})
