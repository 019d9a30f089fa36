# Cluster objects: c(), as.cluster(), [, stopCluster().

test_that("c(), as.cluster() and [ keep the classes", {
  cl <- local_cluster(2)
  expect_s3_class(cl[1], c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
  expect_s3_class(as.cluster(cl[[1]]), c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
  expect_identical(as.cluster(cl), cl)
  both <- c(cl[1], cl[2])
  expect_s3_class(both, c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
  expect_identical(both[1], cl[1])
  expect_identical(unclass(both), unclass(cl))
  from_list <- as.cluster(list(cl[[1]], cl[2]))
  expect_s3_class(from_list, "RichSOCKcluster")
  expect_length(from_list, 2L)
  expect_warning(dup <- c(cl, cl[1]), "The combined cluster contains 1 duplicated nodes")
  expect_length(dup, 3L)
  expect_equal(unlist(parallel::parLapply(both, 1:4, sqrt)), sqrt(1:4))
})

test_that("c() with a plain SOCKcluster keeps only the shared classes", {
  cl <- local_cluster(1)
  base <- parallel::makePSOCKcluster(1)
  on.exit(parallel::stopCluster(base))
  mixed <- c(cl, base)
  expect_identical(class(mixed), c("SOCKcluster", "cluster"))
  expect_identical(isNodeAlive(mixed), c(TRUE, NA))
  expect_equal(unlist(parallel::parLapply(mixed, 1:4, sqrt)), sqrt(1:4))
})

test_that("as.cluster() refuses what is not a node", {
  expect_error(as.cluster(42), "Cannot coerce", class = "parallellyArgumentError")
})

test_that("stopCluster() of part of a cluster stops only that part", {
  cl <- local_cluster(2)
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl[1])
  expect_true(wait_for(function() !process_running(pids[1])))
  expect_true(process_running(pids[2]))
  expect_identical(isNodeAlive(cl), c(FALSE, TRUE))
})

test_that("stopCluster() also ends a worker busy in a long task", {
  cl <- local_cluster(1)
  pid <- node_pid(cl[[1]])
  send_sleep(cl[[1]], 120)
  t0 <- Sys.time()
  parallel::stopCluster(cl)
  # Terminated by the reaper after the 5 s grace period.
  expect_true(wait_for(function() !process_running(pid), timeout = 15))
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 15)
})

test_that("a node stays light (future hashes the cluster for every future) and make_fcn works", {
  cl <- local_cluster(1)
  # The options' make_fcn is a small forwarder, not makeNodePSOCK() itself (~8 KB more per
  # node), and carries no source references. (The rest of a node varies with the set-up: R
  # CMD check's settings add ~3 KB of launch options.)
  make_fcn <- parallelly:::node_options(cl[[1]])$make_fcn
  expect_lt(length(serialize(make_fcn, NULL)), 1000L)
  expect_null(attr(make_fcn, "srcref"))
  expect_false(identical(make_fcn, makeNodePSOCK))
  opts <- parallelly:::node_options(cl[[1]])$make_fcn(port = 11562L, action = "options")
  expect_s3_class(opts, "makeNodePSOCKOptions")
  expect_identical(opts$port, 11562L)
})

test_that("stopCluster() returns once the workers are told; a reaper thread sees all of them exit", {
  before <- parallelly:::backend_child_count()
  cl <- makeClusterPSOCK(I(8))
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 10))
  # Reaped (no zombie left) and forgotten, and the thread has ended.
  expect_true(wait_for(function() parallelly:::backend_reapers_active() == 0L, timeout = 10))
  expect_false(any(file.exists(file.path("/proc", pids))))
  expect_identical(intersect(parallelly:::backend_running_children(), pids), integer(0))
  expect_lte(parallelly:::backend_child_count(), before)
})

test_that("R quitting right after stopCluster() leaves no worker behind, even a busy one", {
  pidfile <- tempfile()
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(parallelly)",
    "cl <- makeClusterPSOCK(2)",
    sprintf("writeLines(as.character(sapply(cl, function(n) n$session_info$process$pid)), %s)", deparse(pidfile)),
    "parallel:::sendCall(cl[[1]], fun = Sys.sleep, args = list(60))",
    "parallel::stopCluster(cl)",
    "quit(save = 'no')"
  ), script)
  t0 <- Sys.time()
  status <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = FALSE, stderr = FALSE, timeout = 30)
  expect_identical(status, 0L)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 20)
  pids <- as.integer(readLines(pidfile))
  expect_length(pids, 2L)
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 5))
})
