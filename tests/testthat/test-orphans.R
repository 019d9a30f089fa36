# No orphans: when the master R process is killed (SIGKILL, no clean-up of its own), every
# worker it started -- local and remote, idle or busy in a long task -- is gone soon after.

start_master <- function(workers, pidfile, env = character(0), setup_strategy = "parallel") {
  script <- withr::local_tempfile(fileext = ".R", .local_envir = parent.frame())
  writeLines(c(
    "library(parallelly)",
    sprintf("cl <- makeClusterPSOCK(%s, setup_strategy = %s)", deparse1(workers), deparse1(setup_strategy)),
    # All but the last worker are busy in a long task; the last one is idle.
    "for (node in cl[-length(cl)]) parallel:::sendCall(node, fun = Sys.sleep, args = list(300))",
    sprintf("writeLines(as.character(vapply(cl, function(n) n$session_info$process$pid, 1L)), %s)", deparse1(pidfile)),
    "Sys.sleep(600)"
  ), script)
  parallelly:::backend_launch(file.path(R.home("bin"), "Rscript"), script, env = env)$pid
}

test_that("local workers, busy or idle, die with a SIGKILLed master", {
  pidfile <- withr::local_tempfile()
  master <- start_master(c("localhost", "localhost", "localhost"), pidfile)
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 3L, timeout = 60))
  pids <- as.integer(readLines(pidfile))
  expect_true(all(vapply(pids, process_running, logical(1))))
  tools::pskill(master, tools::SIGKILL)
  t0 <- Sys.time()
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 15))
  message(sprintf("local workers gone %.1f s after the master was killed", as.numeric(Sys.time() - t0, units = "secs")))
})

test_that("remote workers, busy or idle, die with a SIGKILLed master", {
  hosts <- skip_if_no_ssh_hosts()
  pidfile <- withr::local_tempfile()
  master <- start_master(c("testhost1", "testhost1"), pidfile,
                         env = c(R_PARALLELLY_SSH_CONFIG = hosts$config, R_PARALLELLY_SSH_KNOWN_HOSTS = hosts$known_hosts))
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 2L, timeout = 60))
  pids <- as.integer(readLines(pidfile))
  expect_true(all(pids %in% remote_r_pids("testhost1")))
  tools::pskill(master, tools::SIGKILL)
  t0 <- Sys.time()
  expect_true(wait_for(function() !any(pids %in% remote_r_pids("testhost1")), timeout = 15))
  message(sprintf("remote workers gone %.1f s after the master was killed", as.numeric(Sys.time() - t0, units = "secs")))
})

test_that("forked workers (and their fork server), busy or idle, die with a SIGKILLed master", {
  pidfile <- withr::local_tempfile()
  master <- start_master(c("localhost", "localhost", "localhost"), pidfile, setup_strategy = "fork")
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 3L, timeout = 60))
  pids <- as.integer(readLines(pidfile))
  expect_true(all(vapply(pids, process_running, logical(1))))
  tools::pskill(master, tools::SIGKILL)
  t0 <- Sys.time()
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 15))
  message(sprintf("forked local workers gone %.1f s after the master was killed", as.numeric(Sys.time() - t0, units = "secs")))
})

test_that("forked remote workers, busy or idle, die with a SIGKILLed master", {
  hosts <- skip_if_no_ssh_hosts()
  pidfile <- withr::local_tempfile()
  master <- start_master(c("testhost1", "testhost1"), pidfile, setup_strategy = "fork",
                         env = c(R_PARALLELLY_SSH_CONFIG = hosts$config, R_PARALLELLY_SSH_KNOWN_HOSTS = hosts$known_hosts))
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 2L, timeout = 60))
  pids <- as.integer(readLines(pidfile))
  expect_true(all(pids %in% remote_r_pids("testhost1")))
  tools::pskill(master, tools::SIGKILL)
  t0 <- Sys.time()
  # The server too: no R process of ours is left on the host.
  expect_true(wait_for(function() length(remote_r_pids("testhost1")) == 0L, timeout = 15))
  message(sprintf("forked remote workers and their server gone %.1f s after the master was killed", as.numeric(Sys.time() - t0, units = "secs")))
})
