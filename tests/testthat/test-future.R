# future runs on our clusters unchanged.

skip_if_not_installed("future")
skip_if_not_installed("future.apply")

test_that("plan(multisession) runs more futures than workers, in order", {
  oplan <- future::plan(future::multisession, workers = 2)
  on.exit(future::plan(oplan), add = TRUE)
  withr::defer(parallelly:::stop_all_children())
  pids <- future::value(lapply(1:2, function(i) future::future(Sys.getpid())))
  expect_false(Sys.getpid() %in% unlist(pids))
  fs <- lapply(1:6, function(i) future::future(i^2))
  expect_identical(unlist(future::value(fs)), (1:6)^2)
  expect_identical(future.apply::future_sapply(1:10, function(x) x * 2), (1:10) * 2)
})

test_that("plan(cluster, workers = cl) uses our cluster and survives a killed worker", {
  cl <- local_cluster(2)
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  pids <- cluster_pids(cl)
  expect_true(future::value(future::future(Sys.getpid())) %in% pids)
  expect_identical(future.apply::future_lapply(1:4, sqrt), lapply(1:4, sqrt))
})

test_that("a worker killed under a future gets future's 'no longer alive' post-mortem", {
  oplan <- future::plan(future::multisession, workers = 2)
  on.exit(future::plan(oplan), add = TRUE)
  withr::defer(parallelly:::stop_all_children())
  pid <- future::value(future::future(Sys.getpid()))
  f <- future::future({ Sys.sleep(30); 1 })
  g <- future::future({ Sys.sleep(30); 2 })
  Sys.sleep(0.5)
  # Kill the worker that runs f, from outside (as the OOM killer would).
  busy <- setdiff(parallelly:::backend_running_children(), Sys.getpid())
  tools::pskill(busy, tools::SIGKILL)
  err <- tryCatch(future::value(f), error = function(e) e)
  expect_s3_class(err, "FutureError")
  if (inherits(err, "FutureInterruptError")) {
    # Newer future (1.75 here) reports a worker that died as interrupted, naming its PID,
    # with our nodes as with the reference's (checked side by side on R 4.6.2).
    expect_match(conditionMessage(err), "interrupted \\(pid [0-9]+\\)")
  } else {
    expect_match(conditionMessage(err),
                 "No process exists with this PID, i.e. the localhost worker is no longer alive",
                 fixed = TRUE)
  }
})
