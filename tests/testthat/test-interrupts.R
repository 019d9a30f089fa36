# Ctrl-C during a wait returns promptly, and leaves nothing running. A forked helper sends
# the master SIGINT, as a terminal does on Ctrl-C.

interrupt_after <- function(seconds) {
  master <- Sys.getpid()
  parallel::mcparallel({ Sys.sleep(seconds); tools::pskill(master, tools::SIGINT) })
}

expect_interrupted_quickly <- function(expr, after = 1, within = 5) {
  helper <- interrupt_after(after)
  t0 <- Sys.time()
  res <- tryCatch(expr, interrupt = function(e) "interrupted")
  elapsed <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  parallel::mccollect(helper)
  expect_identical(res, "interrupted")
  expect_lt(elapsed, after + within)
}

test_that("Ctrl-C while waiting for workers to connect stops the launched workers", {
  before <- parallelly:::backend_running_children()
  expect_interrupted_quickly(
    makeClusterPSOCK(2, rscript_startup = quote(Sys.sleep(60)), connectTimeout = 60)
  )
  expect_true(wait_for(function() identical(setdiff(parallelly:::backend_running_children(), before), integer(0))))
})

test_that("Ctrl-C while a frozen host does not answer returns promptly", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  cl <- local_cluster("testhost2")
  sshd <- ssh_host_sshd_pids("testhost2", hosts)
  tools::pskill(sshd, tools::SIGSTOP)
  withr::defer(tools::pskill(sshd, tools::SIGCONT))
  # A probe waiting on the frozen host (its timeout would be 60 s) ...
  expect_interrupted_quickly(isNodeAlive(cl, timeout = 60))
  # ... and a new connection whose handshake never completes.
  expect_interrupted_quickly(
    parallelly:::backend_ssh_connect("testhost2", user = "nobody", config = hosts$config,
                                     known_hosts = hosts$known_hosts, timeout = 60)
  )
  tools::pskill(sshd, tools::SIGCONT)
  expect_true(wait_for(function() isTRUE(suppressWarnings(isNodeAlive(cl[[1]], timeout = 2))), timeout = 15))
})
