# Threads of the master process (/proc/self/task): the output of all workers is drained by
# one thread, which ends with the last worker; stopCluster()'s reaper ends once its workers
# are reaped.

master_threads <- function() length(list.files("/proc/self/task"))

test_that("eight workers with captured output add one thread to the master, and none is left", {
  settle <- function() wait_for(function() parallelly:::backend_reapers_active() == 0L &&
                                  master_threads() == before, timeout = 10)
  before <- master_threads()
  # outfile = "/dev/null": the output of our children is captured (forked workers write a
  # log of their own instead, see test-fork.R).
  cl <- makeClusterPSOCK(I(8), setup_strategy = "parallel")
  pids <- cluster_pids(cl)
  expect_lte(master_threads() - before, 1L)
  # The capture still works: a worker's last words are kept (the death report shows them).
  # (Written by a child process: R-level output goes to the worker's outfile.)
  parallel::clusterCall(cl[1], function() system("echo last words on stdout; echo and on stderr >&2"))
  tools::pskill(pids[1], tools::SIGKILL)
  expect_true(wait_for(function() grepl("and on stderr", parallelly:::backend_child_output(pids[1])), timeout = 5))
  expect_match(parallelly:::backend_child_output(pids[1]), "last words on stdout")
  parallel::stopCluster(cl)
  expect_true(settle())
  expect_identical(master_threads(), before)
})

test_that("workers that share the master's output (outfile = NULL) add no thread", {
  before <- master_threads()
  for (strategy in c("parallel", "fork")) {
    cl <- local_cluster(I(4), outfile = NULL, setup_strategy = strategy)
    # (A fork server shares the master's output too.)
    expect_identical(master_threads(), before)
    parallel::stopCluster(cl)
    # stopCluster()'s reaper thread ends once the workers are reaped.
    expect_true(wait_for(function() master_threads() == before, timeout = 10))
  }
})

test_that("forked workers with captured output add at most one thread (their server's)", {
  before <- master_threads()
  cl <- local_cluster(I(8), setup_strategy = "fork")
  expect_identical(attr(cl[[1]], "process")$kind, "fork")
  expect_lte(master_threads() - before, 1L)
})
