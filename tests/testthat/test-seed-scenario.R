# The seed scenario on two local workers, end to end.

test_that("workers can be checked, killed while busy, cloned, grown and stopped", {
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(2)
  expect_s3_class(cl, c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  pids <- cluster_pids(cl)
  expect_true(all(vapply(pids, process_running, logical(1))))

  # A busy worker is alive and can be killed while busy.
  send_sleep(cl[[2]], 60)
  expect_true(isNodeAlive(cl[[2]]))
  expect_true(killNode(cl[[2]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 5))
  expect_false(process_running(pids[2]))
  expect_true(process_running(pids[1]))

  # The cluster is broken now, and says so.
  expect_error(parallel::parLapply(cl, 1:8, sqrt))
  expect_output(print(cl), "1 node (#2) has a broken connection (ERROR: invalid connection; ", fixed = TRUE)

  # cloneNode() brings it back with a new PID.
  cl[[2]] <- cloneNode(cl[[2]])
  expect_s3_class(cl, "RichSOCKcluster")
  expect_false(node_pid(cl[[2]]) == pids[2])
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))
  expect_output(print(cl), "^Socket cluster with 2 nodes on host 'localhost' \\(R version")

  # Growing with clones.
  cl <- c(cl, cloneNode(cl[c(1, 1)]))
  expect_s3_class(cl, "RichSOCKcluster")
  expect_length(cl, 4L)
  expect_identical(isNodeAlive(cl), rep(TRUE, 4L))
  expect_length(unique(cluster_pids(cl)), 4L)
  expect_equal(unlist(parallel::clusterEvalQ(cl, 42L)), rep(42L, 4L))

  # Kill them all, then relaunch them all.
  expect_identical(killNode(cl), rep(TRUE, 4L))
  expect_true(wait_for(function() identical(isNodeAlive(cl), rep(FALSE, 4L)), timeout = 5))
  expect_output(print(cl), "4 nodes (#1, #2, #3, #4) have broken connections", fixed = TRUE)
  old <- cluster_pids(cl)
  cl <- cloneNode(cl)
  expect_s3_class(cl, "RichSOCKcluster")
  expect_identical(isNodeAlive(cl), rep(TRUE, 4L))
  expect_length(intersect(cluster_pids(cl), old), 0L)
  expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))

  # After stopCluster() no worker process remains, not even as a zombie.
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 10))
  expect_identical(parallelly:::backend_running_children(), integer(0))
})
