# print() makes no network round trip: with a host frozen (its sshd SIGSTOPped), printing a
# cluster or a node returns at once and shows what is known; summary() asks the hosts
# within its timeout.

test_that("print() returns at once while a host is frozen; summary() within its timeout", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(c("testhost2", "localhost", "testhost2"))
  before <- capture.output(print(cl))
  before_node <- capture.output(print(cl[[1]]))
  sshd <- ssh_host_sshd_pids("testhost2", hosts)
  expect_gte(length(sshd), 2L)
  tools::pskill(sshd, tools::SIGSTOP)
  withr::defer(tools::pskill(sshd, tools::SIGCONT))

  t0 <- Sys.time()
  out <- capture.output(print(cl))
  out_node <- capture.output(print(cl[[1]]))
  capture.output(print(cl[[2]]))
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 1)
  # The same text as when the host answered: nothing about the frozen host is made up.
  expect_identical(out, before)
  expect_identical(out_node, before_node)
  expect_match(out, "2 nodes are on host 'testhost2'", fixed = TRUE)

  t0 <- Sys.time()
  s <- summary(cl)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 15)
  expect_identical(s$alive, c(NA, TRUE, NA))
  tools::pskill(sshd, tools::SIGCONT)
  expect_true(wait_for(function() identical(suppressWarnings(isNodeAlive(cl, timeout = 2)), rep(TRUE, 3)), timeout = 15))
})

test_that("a remote worker summary() found dead prints as dead, without asking the host again", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(c("testhost2", "testhost2"))
  parallel::clusterEvalQ(cl[2], cat("last words before the freeze\n"))
  expect_true(killNode(cl[[2]], signal = tools::SIGKILL))
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(TRUE, FALSE)), timeout = 10))
  # Not yet asked by summary(): print() does not know (and does not ask).
  expect_false(grepl("no longer running", paste(capture.output(print(cl[[2]])), collapse = "\n")))
  expect_match(summary(cl)$exit[2], "killed by signal 9", fixed = TRUE)
  sshd <- ssh_host_sshd_pids("testhost2", hosts)
  tools::pskill(sshd, tools::SIGSTOP)
  withr::defer(tools::pskill(sshd, tools::SIGCONT))
  t0 <- Sys.time()
  out <- paste(capture.output(print(cl[[2]])), collapse = "\n")
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 1)
  expect_match(out, "The worker is no longer running: killed by signal 9", fixed = TRUE)
  expect_match(out, "Its last output was:\n.*last words before the freeze")
  tools::pskill(sshd, tools::SIGCONT)
})
