# The short spin before a blocking read of a local worker's answer (R/spinWait.R): how many
# polls it makes is counted by tracing socketSelect(), which it polls with. The first call
# of a session is traced too, as it measures the cost of one poll (tracing makes it dearer).

# Calls of socketSelect() while `expr` runs.
count_selects <- function(expr) {
  counter <- new.env()
  counter$calls <- 0L
  suppressMessages(trace("socketSelect", bquote(assign("calls", get("calls", .(counter)) + 1L, envir = .(counter))), where = baseenv(), print = FALSE))
  on.exit(suppressMessages(untrace("socketSelect", where = baseenv())))
  force(expr)
  counter$calls
}

spin_state <- function() get("spin", envir = parallelly:::.package)

# The spin's budget on its own: it does not stand down for what else runs on this (shared)
# machine while the calling test runs.
local_spin_always <- function(env = parent.frame()) {
  assign("spin_stands_down", FALSE, envir = parallelly:::.package)
  assign("spin_rest", 0L, envir = parallelly:::.package)  # nor rests after an earlier stand-down
  withr::defer(assign("spin_stands_down", TRUE, envir = parallelly:::.package), envir = env)
}

# One busy loop per core (other processes, as users run them) until the calling test ends;
# returns once the kernel counts more runnable threads than cores.
local_busy_cores <- function(env = parent.frame()) {
  n <- parallel::detectCores()
  pids <- vapply(seq_len(n), function(i) {
    as.integer(system("sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!", intern = TRUE))
  }, integer(1))
  withr::defer(tools::pskill(pids, tools::SIGKILL), envir = env)
  expect_true(wait_for(function() isTRUE(parallelly:::backend_cores_taken()), timeout = 10))
  pids
}

test_that("a local worker's answer is polled for, the spin halves for long tasks and is whole again for short ones", {
  withr::local_options(parallelly.recvData.spin = 0.02)
  local_spin_always()
  cl <- local_cluster(1)
  node <- cl[1]
  count_selects(expect_identical(parallel::clusterEvalQ(node, 1L), list(1L)))  # polls in 20 ms
  full <- spin_state()$max
  expect_true(full >= 10L)
  # An answer 0.3 s away: the whole spin, then a blocking read; the next spin is half as long.
  polls <- integer(0)
  for (i in 1:3) polls[i] <- count_selects(expect_identical(parallel::clusterCall(node, function(i) { Sys.sleep(0.3); i }, i), list(i)))
  expect_identical(polls, c(full, full %/% 2L, full %/% 4L))
  for (i in 1:16) parallel::clusterEvalQ(node, Sys.sleep(0.05))
  expect_identical(spin_state()$polls, 1L)
  expect_identical(count_selects(parallel::clusterEvalQ(node, Sys.sleep(0.2))), 1L)
  # An answer there at the first poll tells nothing and leaves the spin as it is; one that
  # comes soon after it (5 ms, within the 20 ms) makes it whole again.
  expect_identical(parallel::clusterEvalQ(node, "quick"), list("quick"))
  expect_true(spin_state()$polls %in% c(1L, full))
  expect_identical(parallel::clusterEvalQ(node, { Sys.sleep(0.005); "soon" }), list("soon"))
  expect_identical(spin_state()$polls, full)
  expect_lt(count_selects(parallel::clusterEvalQ(node, NULL)), full)
})

test_that("load-balanced calls poll all workers' connections the same way, with fewer workers than cores", {
  withr::local_options(parallelly.recvData.spin = 0.02)
  local_spin_always()
  cores <- parallel::detectCores()
  skip_if(cores < 2L, "one core: a load-balanced call never spins")
  cl <- local_cluster(I(cores - 1L))
  count_selects(expect_identical(unlist(parallel::parLapplyLB(cl, 1:10, function(x) x * 3L, chunk.size = 1)), (1:10) * 3L))
  full <- spin_state()$max
  # Both workers sleep 0.3 s: the first answer comes after a whole spin.
  polls <- count_selects(expect_identical(unlist(parallel::parLapplyLB(cl, 1:2, function(x) { Sys.sleep(0.3); -x }, chunk.size = 1)), -(1:2)))
  expect_gte(polls, full + 1L)  # the spin, then the blocking socketSelect()
  # As many workers as cores: they are busy while the master waits; one blocking
  # socketSelect() per answer.
  cl_all <- local_cluster(I(cores))
  expect_identical(count_selects(parallel::parLapplyLB(cl_all, 1:10, function(x) x, chunk.size = 1)), 10L)
  # Turned off: one blocking socketSelect() per answer, nothing more.
  withr::local_options(parallelly.recvData.spin = 0)
  expect_identical(count_selects(parallel::parLapplyLB(cl, 1:10, function(x) x, chunk.size = 1)), 10L)
  expect_identical(count_selects(parallel::clusterEvalQ(cl, Sys.getpid())), 0L)
})

test_that("the spin stands down while every core is taken", {
  withr::local_options(parallelly.recvData.spin = 0.005)
  cl <- local_cluster(1)
  node <- cl[1]
  count_selects(expect_identical(parallel::clusterEvalQ(node, 1L), list(1L)))
  full <- spin_state()$max
  expect_true(full >= 10L)
  local_busy_cores()
  # An answer 0.3 s away: one poll, a look at the cores, and the blocking read at once; the
  # reads after it do not spin at all (they rest), and once rested, one poll again.
  assign("spin_rest", 0L, envir = parallelly:::.package)
  slow <- function(i) count_selects(expect_identical(parallel::clusterCall(node, function(i) { Sys.sleep(0.1); i }, i), list(i)))
  expect_identical(slow(1L), 1L)
  rest <- parallelly:::spin_rest_calls
  expect_identical(get("spin_rest", envir = parallelly:::.package), rest)
  expect_identical(vapply(seq_len(rest), slow, 0L), rep(0L, rest))
  expect_identical(slow(2L), 1L)
  # The same machine, the spin told not to stand down: it polls its whole budget (which
  # takes longer than on an idle machine; the answer is further away).
  assign("spin", modifyList(spin_state(), list(polls = full)), envir = parallelly:::.package)
  local({
    local_spin_always()
    expect_identical(count_selects(parallel::clusterEvalQ(node, Sys.sleep(1.5))), full)
  })
  # Load-balanced calls (over fewer workers than cores, which spin on an idle machine): per
  # answer one poll and the blocking socketSelect(), at most.
  cl2 <- local_cluster(I(max(1L, parallel::detectCores() - 1L)))
  polls <- count_selects(expect_identical(unlist(parallel::parLapplyLB(cl2, 1:2, function(x) { Sys.sleep(0.3); -x }, chunk.size = 1)), -(1:2)))
  expect_lte(polls, 4L)
  # (That a spin on a machine with an idle core polls on is the tests above, where the
  # spin does not look: this machine is shared, so an idle core cannot be counted on.)
})

test_that("a bad spin option is an error naming it, and the cluster works once it is mended", {
  cl <- local_cluster(2)
  for (bad in list(-1, NA_real_, "fast", c(1e-4, 2e-4), 5)) {
    # (At the next read that spins: not one that rests after the spin stood down.)
    assign("spin_rest", 0L, envir = parallelly:::.package)
    withr::with_options(list(parallelly.recvData.spin = bad), {
      expect_error(parallel::clusterEvalQ(cl, 1L), "Option 'parallelly.recvData.spin' must be one number of seconds", class = "parallellyOptionError")
    })
    # The answers of the failed call are not taken for the next call's.
    expect_identical(parallel::clusterEvalQ(cl, 2L), list(2L, 2L))
  }
})

test_that("the spin option can be set by an environment variable", {
  # A plain Rscript child (callr would load processx here, whose SIGCHLD handler keeps base
  # parallel from reaping its mcfork() children at exit).
  out <- withr::with_envvar(c(R_PARALLELLY_RECVDATA_SPIN = "1e-3"),
    system2(file.path(R.home("bin"), "Rscript"),
            c("-e", shQuote("library(parallelly); cat(getOption('parallelly.recvData.spin'))")),
            stdout = TRUE, stderr = FALSE, timeout = 60))
  expect_identical(as.numeric(tail(out, 1L)), 1e-3)
})

test_that("a remote worker's answer is not polled for", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  withr::local_options(parallelly.recvData.spin = 0.02)
  cl <- local_cluster("testhost1")
  expect_identical(parallel::clusterEvalQ(cl, 1L), list(1L))
  expect_identical(count_selects(parallel::clusterEvalQ(cl, Sys.sleep(0.2))), 0L)
})
