# Helpers for tests that start real local workers.

# Poll `condition` every `interval` seconds until it is TRUE or `timeout` seconds passed.
wait_for <- function(condition, timeout = 10, interval = 0.05) {
  deadline <- Sys.time() + timeout
  repeat {
    if (isTRUE(condition())) return(TRUE)
    if (Sys.time() >= deadline) return(FALSE)
    Sys.sleep(interval)
  }
}

# Whether a process runs, judged independently of the package: /proc and its state field
# (a zombie does not count).
process_running <- function(pid) {
  stat <- file.path("/proc", pid, "stat")
  if (!file.exists(stat)) return(FALSE)
  line <- tryCatch(readLines(stat, warn = FALSE), error = function(e) "")
  if (length(line) == 0L || !nzchar(line[1L])) return(FALSE)
  state <- strsplit(sub("^.*\\) ", "", line[1L]), " ")[[1L]][1L]
  !state %in% c("Z", "X")
}

node_pid <- function(node) node$session_info$process$pid

cluster_pids <- function(cl) vapply(cl, node_pid, integer(1))

# A cluster whose workers (and any clones of them) are stopped when the calling test ends.
local_cluster <- function(..., env = parent.frame()) {
  cl <- makeClusterPSOCK(...)
  withr::defer({
    try(parallel::stopCluster(cl), silent = TRUE)
    parallelly:::stop_all_children()
  }, envir = env)
  cl
}

# Busy a worker with a long task without waiting for it.
send_sleep <- function(node, seconds) {
  parallel:::sendCall(node, fun = Sys.sleep, args = list(seconds))
}

# Under the current future plan: every progressr update reaches the master's handler.
expect_progress_relayed <- function() {
  seen <- 0L
  recorder <- progressr::make_progression_handler("recorder", reporter = list(
    update = function(config, state, progression, ...) if (inherits(progression, "progression")) seen <<- seen + 1L
  ), enable = TRUE)
  progressr::with_progress({
    p <- progressr::progressor(steps = 4L)
    res <- future.apply::future_lapply(1:4, function(i) { p(); i })
  }, handlers = recorder, enable = TRUE)
  expect_identical(unlist(res), 1:4)
  expect_gte(seen, 4L)
}

# Under the current future plan: an immediate condition comes back while the future still
# runs (not only with its value), from a worker among `pids`.
expect_immediate_conditions_relayed <- function(pids) {
  f <- future::future({
    signalCondition(structure(class = c("immediateCondition", "condition"),
                              list(message = "started", call = NULL)))
    Sys.sleep(3)
    Sys.getpid()
  })
  got <- NULL
  deadline <- Sys.time() + 20
  withCallingHandlers(
    while (is.null(got) && Sys.time() < deadline) { future::resolved(f); Sys.sleep(0.05) },
    immediateCondition = function(c) got <<- list(message = conditionMessage(c), resolved = future::resolved(f))
  )
  expect_identical(got$message, "started")
  expect_false(got$resolved)
  expect_true(future::value(f) %in% pids)
}

# The value of `expr` and the messages of the warnings it gave (muffled).
with_warnings <- function(expr) {
  warnings <- character()
  value <- withCallingHandlers(expr, warning = function(w) {
    warnings <<- c(warnings, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  list(value = value, warnings = warnings)
}
