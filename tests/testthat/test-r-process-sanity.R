# With the package loaded and workers running, R's own child-process machinery keeps
# working: we install no SIGCHLD/SIGPIPE/SIGINT handlers and reap only our own children.

test_that("system() and mclapply() still work while workers run", {
  cl <- local_cluster(1)
  expect_identical(system("exit 3", ignore.stdout = TRUE), 3L)
  expect_identical(system2("echo", "hello", stdout = TRUE), "hello")
  res <- parallel::mclapply(1:4, function(i) Sys.getpid(), mc.cores = 2)
  expect_length(unique(unlist(res)), 2L)
  expect_true(isNodeAlive(cl[[1]]))
  expect_equal(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
})

test_that("workers are in their own process group: a Ctrl-C at the terminal spares them", {
  cl <- local_cluster(1)
  pid <- node_pid(cl[[1]])
  stat <- strsplit(sub("^.*\\) ", "", readLines(file.path("/proc", pid, "stat"))), " ")[[1]]
  pgrp <- as.integer(stat[3])
  expect_identical(pgrp, pid)
})
