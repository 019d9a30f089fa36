# An mclapply()/mcparallel() child of a master that holds workers (and SSH connections with
# I/O threads) can ask about them without hanging or being misled: the children are its
# siblings, and the SSH connections' threads do not exist in it.

# Run `expr` in a forked child and return its value, or fail if it takes over `timeout` s.
in_forked_child <- function(expr, timeout = 20) {
  job <- parallel::mcparallel(expr)
  res <- parallel::mccollect(job, wait = FALSE, timeout = timeout)
  if (is.null(res)) {
    tools::pskill(job$pid, tools::SIGKILL)
    parallel::mccollect(job, wait = FALSE, timeout = 1)
    stop("the forked child did not answer within ", timeout, " s")
  }
  res[[1]]
}

test_that("a forked child sees the master's local workers as alive (and no deadlock)", {
  cl <- local_cluster(2)
  for (i in 1:5) expect_identical(in_forked_child(isNodeAlive(cl)), c(TRUE, TRUE))
  res <- parallel::mclapply(1:4, function(i) isNodeAlive(cl), mc.cores = 2)
  expect_identical(unique(res), list(c(TRUE, TRUE)))
  # The master still owns and reaps them.
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  pid <- node_pid(cl[[1]])
  expect_true(killNode(cl[[1]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE)))
  expect_identical(in_forked_child(isNodeAlive(cl)), c(FALSE, TRUE))
})

test_that("a forked child asking about remote workers gets NA at once, never a hang", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"))
  for (i in 1:5) {
    res <- in_forked_child(suppressWarnings(isNodeAlive(cl)))
    expect_identical(res, c(NA, NA))
  }
  msg <- in_forked_child(tryCatch(isNodeAlive(cl), warning = conditionMessage))
  expect_match(msg, "forked child", fixed = TRUE)
  expect_identical(in_forked_child(killNode(cl[[1]])), NA)
  # The master's connection is untouched by all that.
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
})
