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

# Start a master with `workers`, check that its workers run (`running(pids)`), SIGKILL it,
# and expect `gone(pids)` within 15 s; reports how long that took.
expect_orphans_gone <- function(label, workers, running, gone, setup_strategy = "parallel", env = character(0)) {
  pidfile <- withr::local_tempfile()
  master <- start_master(workers, pidfile, env = env, setup_strategy = setup_strategy)
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == length(workers), timeout = 60))
  pids <- as.integer(readLines(pidfile))
  expect_true(running(pids))
  tools::pskill(master, tools::SIGKILL)
  t0 <- Sys.time()
  expect_true(wait_for(function() gone(pids), timeout = 15))
  message(sprintf("%s gone %.1f s after the master was killed", label, as.numeric(Sys.time() - t0, units = "secs")))
}

local_running <- function(pids) all(vapply(pids, process_running, logical(1)))
local_gone <- function(pids) !any(vapply(pids, process_running, logical(1)))
ssh_env <- function(hosts) c(R_PARALLELLY_SSH_CONFIG = hosts$config, R_PARALLELLY_SSH_KNOWN_HOSTS = hosts$known_hosts)

test_that("local workers, busy or idle, die with a SIGKILLed master", {
  expect_orphans_gone("local workers", rep("localhost", 3), local_running, local_gone)
})

test_that("remote workers, busy or idle, die with a SIGKILLed master", {
  hosts <- skip_if_no_ssh_hosts()
  expect_orphans_gone("remote workers", rep("testhost1", 2),
                      running = function(pids) all(pids %in% remote_r_pids("testhost1")),
                      gone = function(pids) !any(pids %in% remote_r_pids("testhost1")),
                      env = ssh_env(hosts))
})

test_that("forked workers (and their fork server), busy or idle, die with a SIGKILLed master", {
  expect_orphans_gone("forked local workers", rep("localhost", 3), local_running, local_gone,
                      setup_strategy = "fork")
})

test_that("forked remote workers, busy or idle, die with a SIGKILLed master", {
  hosts <- skip_if_no_ssh_hosts()
  # The fork server needs our package on the host: testhost3 has it in the user's library.
  skip_unless_package_on_testhost3(hosts)
  # The server too: no R process of ours is left on the host.
  expect_orphans_gone("forked remote workers and their server", rep("testhost3", 2),
                      running = function(pids) all(pids %in% remote_r_pids("testhost3")),
                      gone = function(pids) length(remote_r_pids("testhost3")) == 0L,
                      setup_strategy = "fork", env = ssh_env(hosts))
})
