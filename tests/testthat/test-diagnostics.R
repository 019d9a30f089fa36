# Why a worker died, resource use, and repairing a cluster.

test_that("summary() reports health: alive, rss, cpu, uptime and restarts", {
  cl <- local_cluster(2)
  s <- summary(cl)
  expect_identical(s$alive, c(TRUE, TRUE))
  expect_true(all(is.na(s$exit)))
  expect_true(all(s$rss > 10 * 2^20))        # an R process uses more than 10 MiB
  # A forked worker's CPU time counts from its fork (R started in the fork server), so it
  # may still read 0 right after setup; it is never negative or missing.
  expect_true(all(s$cpu >= 0))
  expect_true(all(s$uptime >= 0 & s$uptime < 600))
  expect_identical(s$restarts, c(0L, 0L))
  # CPU time grows with work done.
  parallel::clusterEvalQ(cl[1], { x <- 0; for (i in 1:3e6) x <- x + i; x })
  expect_gt(summary(cl)$cpu[1], s$cpu[1])
})

test_that("a SIGKILLed worker's summary and print say SIGKILL; its output is kept", {
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(2)
  parallel::clusterEvalQ(cl[2], cat("last words from worker 2\n"))
  tools::pskill(node_pid(cl[[2]]), tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE)))
  s <- summary(cl)
  expect_identical(s$alive, c(TRUE, FALSE))
  expect_match(s$exit[2], "killed by signal 9 (SIGKILL)", fixed = TRUE)
  expect_match(s$exit[2], "out-of-memory", fixed = TRUE)
  expect_true(is.na(s$rss[2]))
  out <- paste(capture.output(print(cl[[2]])), collapse = "\n")
  expect_match(out, "The worker is no longer running: killed by signal 9 (SIGKILL)", fixed = TRUE)
  expect_match(out, "Its last output was:\n", fixed = TRUE)
  expect_match(out, "\n   last words from worker 2", fixed = TRUE)
  # Kept by the node's kind (the captured output of our child, a forked worker's log).
  expect_match(paste(parallelly:::node_last_output(cl[[2]]), collapse = "\n"), "last words from worker 2", fixed = TRUE)
})

test_that("a worker that exits by itself reports its exit status", {
  cl <- local_cluster(1)
  parallel:::sendCall(cl[[1]], fun = function() quit(save = "no", status = 7), args = list())
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  expect_identical(summary(cl)$exit, "exit status 7")
})

test_that("repairCluster() relaunches exactly the dead nodes, in place", {
  cl <- local_cluster(I(3), setup_strategy = "sequential")
  pids <- cluster_pids(cl)
  expect_identical(killNode(cl[c(1, 3)]), c(TRUE, TRUE))
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(FALSE, TRUE, FALSE))))
  cl <- repairCluster(cl)
  expect_s3_class(cl, "RichSOCKcluster")
  expect_identical(attr(cl, "repaired"), c(1L, 3L))
  expect_identical(isNodeAlive(cl), rep(TRUE, 3L))
  expect_identical(cluster_pids(cl)[2], pids[2])
  expect_false(any(cluster_pids(cl)[c(1, 3)] %in% pids))
  expect_identical(summary(cl)$restarts, c(1L, 0L, 1L))
  expect_equal(unlist(parallel::parLapply(cl, 1:6, sqrt)), sqrt(1:6))
  # All dead: all relaunched; nothing dead: nothing done.
  killNode(cl)
  expect_true(wait_for(function() identical(isNodeAlive(cl), rep(FALSE, 3L))))
  cl <- repairCluster(cl)
  expect_identical(isNodeAlive(cl), rep(TRUE, 3L))
  expect_identical(attr(repairCluster(cl), "repaired"), integer(0))
  expect_error(repairCluster(42), "'cl'", class = "parallellyArgumentError")
})
