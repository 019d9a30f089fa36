# Local workers serve with our worker loop (R/workerLoop.R); it must answer exactly as base
# R's parallel:::workLoop() does.

# The function serving tasks on the worker: the frame of the call named workLoop.
worker_loop_kind <- function() {
  calls <- sys.calls()
  for (i in seq_along(calls)) {
    f <- calls[[i]][[1L]]
    if (is.name(f) && identical(as.character(f), "workLoop")) {
      env <- environment(sys.function(i))
      return(if (identical(env, baseenv())) "lean" else environmentName(env))
    }
  }
  "none"
}
environment(worker_loop_kind) <- baseenv()

test_that("local workers run the lean loop and never load parallel; their output goes where OUT= says", {
  out <- tempfile(fileext = ".log")
  on.exit(unlink(out), add = TRUE)
  cl <- local_cluster(2, outfile = out)
  expect_identical(parallel::clusterCall(cl, worker_loop_kind), list("lean", "lean"))
  expect_identical(parallel::clusterEvalQ(cl, "parallel" %in% loadedNamespaces()), list(FALSE, FALSE))
  expect_false(grepl("parallel:::", parallelly:::node_options(cl[[1]])$cmd, fixed = TRUE))
  # The compiled entry and loop come from a file of this session: nothing to compile there.
  expect_match(parallelly:::node_options(cl[[1]])$cmd, "readRDS(", fixed = TRUE)
  # A task that needs parallel loads it as on any worker.
  expect_identical(parallel::clusterEvalQ(cl, parallel::detectCores() >= 1L), list(TRUE, TRUE))
  pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
  parallel::clusterEvalQ(cl, { cat("to stdout\n"); message("to stderr") })
  log <- readLines(out)
  for (pid in pids) expect_true(any(grepl(sprintf("^starting worker pid=%d on localhost:[0-9]+ at [0-9:.]+$", pid), log)))
  expect_true(all(c("to stdout", "to stderr") %in% log))
  # A user's own entry code is left alone: base R's loop serves.
  cl2 <- local_cluster(1, rscript_args = c("-e", "parallel:::.workRSOCK()"))
  expect_identical(parallel::clusterCall(cl2, worker_loop_kind), list("parallel"))
})

test_that("a remote worker's command keeps base R's loop", {
  opts <- makeNodePSOCK("n1.remote.org", port = 11562L, action = "options")
  expect_false(grepl("workLoop", opts$cmd, fixed = TRUE))
  expect_match(opts$cmd, "parallel:::.workRSOCK", fixed = TRUE)
})

test_that("VALUE messages are base R's: value, success, time, tag; errors as snow-try-error", {
  for (xdr in c(FALSE, TRUE)) {
    cl <- local_cluster(1, useXDR = xdr)
    node <- cl[[1]]
    parallel:::sendCall(node, function(x) x + 1, list(41), tag = 7L)
    msg <- parallel:::recvData(node)
    expect_identical(msg$type, "VALUE")
    expect_identical(msg$value, 42)
    expect_true(msg$success)
    expect_s3_class(msg$time, "proc_time")
    expect_identical(msg$tag, 7L)
    expect_setequal(names(msg), c("type", "value", "success", "time", "tag"))

    parallel:::sendCall(node, function() stop("boom"), list())
    msg <- parallel:::recvData(node)
    expect_false(msg$success)
    expect_s3_class(msg$value, c("snow-try-error", "try-error"), exact = TRUE)
    expect_identical(unclass(msg$value), "boom")
    expect_null(msg$tag)
    # A task may return such an object itself: that is success.
    own <- structure("fake", class = c("snow-try-error", "try-error"))
    parallel:::sendCall(node, function(v) v, list(own))
    msg <- parallel:::recvData(node)
    expect_true(msg$success)
    expect_identical(msg$value, own)
    expect_error(parallel::clusterEvalQ(cl, stop("bad task")), "bad task")
    expect_identical(parallel::clusterEvalQ(cl, 1 + 1), list(2))
  }
})

test_that("tasks of eval and lapply (called directly by our loop) answer as on base R's workers", {
  cl <- local_cluster(2)
  base <- parallel::makePSOCKcluster(2)
  on.exit(parallel::stopCluster(base), add = TRUE)
  both <- function(f) {
    ours <- tryCatch(f(cl), error = conditionMessage)
    theirs <- tryCatch(f(base), error = conditionMessage)
    expect_identical(ours, theirs)
    ours
  }
  # clusterEvalQ(): an expression evaluated in the global environment.
  both(function(cl) parallel::clusterEvalQ(cl, { x <- 20; y <- quote(z); list(x + 1, y) }))
  expect_identical(both(function(cl) parallel::clusterEvalQ(cl, x)), list(20, 20))
  expect_match(both(function(cl) parallel::clusterEvalQ(cl, stop("failed: ", x))), "first error: failed: 20", fixed = TRUE)
  # eval() with a list as the environment, positional or named, a third argument, or the
  # expression named: each as do.call() would call it.
  both(function(cl) parallel::clusterCall(cl, eval, quote(a + b), list(a = 1, b = 2)))
  both(function(cl) parallel::clusterCall(cl, eval, quote(a + b), envir = list(a = 1, b = 2)))
  both(function(cl) parallel::clusterCall(cl, eval, quote(a * b), list(a = 2), list(b = 5)))
  both(function(cl) parallel::clusterCall(cl, eval, envir = list(a = 3), expr = quote(a)))
  both(function(cl) parallel::clusterCall(cl, eval, quote(class(sys.function()))))
  # parLapply(): a chunk and a function; a language object in the data stays data; extra
  # arguments; the function named by a string; an error.
  both(function(cl) parallel::parLapply(cl, 1:7, function(v) v * 2))
  both(function(cl) parallel::parLapplyLB(cl, list(quote(f(x)), as.name("y"), NULL), function(e) class(e)))
  both(function(cl) parallel::parLapply(cl, 1:4, function(v, add) v + add, add = 10))
  both(function(cl) parallel::clusterCall(cl, lapply, list(4, 9), "sqrt"))
  both(function(cl) parallel::parLapply(cl, 1:4, function(v) if (v == 3) stop("three") else v))
  # Shapes parallel does not send go through do.call(), as on base R's workers.
  task <- function(cl, fun, args) {
    parallel:::sendCall(cl[[1]], fun, args)
    parallel:::recvResult(cl[[1]])
  }
  both(function(cl) task(cl, "eval", structure(list(quote(1 + 1), globalenv()), names = c(NA, "envir"))))
  both(function(cl) task(cl, "eval", list(quote(1 + 1), envir = globalenv(), enclos = baseenv())))
  both(function(cl) task(cl, NA_character_, list(1, 2)))
  both(function(cl) task(cl, c("eval", "lapply"), list(1, 2)))
  both(function(cl) task(cl, "lapply", list(1:3, FUN = function(v) -v)))
  both(function(cl) task(cl, "lapply", list(X = 1:3, FUN = function(v) -v)))
})

test_that("a task cannot shadow what the loop calls", {
  cl <- local_cluster(1)
  parallel::clusterEvalQ(cl, { unserialize <- function(...) stop("shadowed"); serialize <- unserialize; NULL })
  expect_identical(parallel::clusterEvalQ(cl, 3L), list(3L))
})

test_that("an interrupted task sends no answer and the worker serves on", {
  cl <- local_cluster(1)
  node <- cl[[1]]
  pid <- node_pid(node)
  send_sleep(node, 30)
  Sys.sleep(0.5)
  tools::pskill(pid, tools::SIGINT)
  expect_true(wait_for(function() {
    # Nothing arrives for the interrupted task.
    !isTRUE(socketSelect(list(node$con), timeout = 0.2))
  }, timeout = 2))
  expect_identical(parallel::clusterEvalQ(cl, "after"), list("after"))
  expect_true(process_running(pid))
})

test_that("RNG streams and DONE behave as with base R's workers", {
  cl <- local_cluster(2)
  base <- parallel::makePSOCKcluster(2)
  on.exit(parallel::stopCluster(base), add = TRUE)
  parallel::clusterSetRNGStream(cl, 123)
  parallel::clusterSetRNGStream(base, 123)
  expect_identical(parallel::clusterEvalQ(cl, runif(2)), parallel::clusterEvalQ(base, runif(2)))
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(vapply(pids, process_running, logical(1))), timeout = 10))
})

test_that("the loop made in this session is the one the workers run", {
  loop <- parallelly:::lean_work_loop()
  expect_true(is.function(loop))
  expect_identical(environment(loop), baseenv())
  expect_identical(names(formals(loop)), "master")
})

test_that("the loop's handlers survive many errors and interrupts in a row", {
  cl <- local_cluster(1)
  node <- cl[[1]]
  for (i in 1:30) {
    parallel:::sendCall(node, function(i) stop("e", i), list(i), tag = i)
    msg <- parallel:::recvData(node)
    expect_false(msg$success)
    expect_identical(unclass(msg$value), paste0("e", i))
    expect_identical(msg$tag, i)
  }
  # A task that handles its own error, or signals other conditions, succeeds.
  expect_identical(parallel::clusterEvalQ(cl, tryCatch(stop("inner"), error = function(e) "handled")), list("handled"))
  expect_identical(parallel::clusterEvalQ(cl, { warning("w"); message("m"); signalCondition(simpleCondition("c")); 5 }), list(5))
  # Interrupts, then an error, then success: the frames do not pile up.
  pid <- node_pid(node)
  depth <- function() sys.nframe()
  d0 <- parallel::clusterCall(cl, depth)[[1]]
  for (k in 1:3) {
    send_sleep(node, 30)
    Sys.sleep(0.3)
    tools::pskill(pid, tools::SIGINT)
    Sys.sleep(0.2)
  }
  expect_error(parallel::clusterEvalQ(cl, stop("after interrupts")), "after interrupts")
  expect_identical(parallel::clusterCall(cl, depth)[[1]], d0)
  expect_identical(parallel::clusterEvalQ(cl, "still serving"), list("still serving"))
})

test_that("a worker whose connection breaks ends, as with base R's loop", {
  cl <- local_cluster(1)
  pid <- node_pid(cl[[1]])
  close(cl[[1]]$con)
  expect_true(wait_for(function() !process_running(pid), timeout = 10))
})

test_that("the local entry code retries until SETUPTIMEOUT as parallel's does, then serves the master", {
  code <- parallelly:::lean_worker_entry_code(write = TRUE)
  rscript <- file.path(R.home("bin"), "Rscript")
  port <- parallelly::freePort()
  args <- function(setup) c("-e", shQuote(code), "MASTER=127.0.0.1", paste0("PORT=", port), "OUT=",
                            paste0("SETUPTIMEOUT=", setup), "XDR=FALSE")
  # Nobody listens: it gives up after SETUPTIMEOUT with the connection's error.
  t <- system.time(out <- suppressWarnings(system2(rscript, args(0.5), stdout = TRUE, stderr = TRUE)))[["elapsed"]]
  expect_identical(attr(out, "status"), 1L)
  expect_true(any(grepl("cannot be opened", out)), info = paste(out, collapse = "\n"))
  expect_true(any(grepl("^starting worker pid=[0-9]+ on 127.0.0.1:[0-9]+ at ", out)))
  expect_lt(t, 10)
  # A master that listens only after the first tries: the worker connects and serves it.
  system2(rscript, args(30), wait = FALSE, stdout = FALSE, stderr = FALSE)
  Sys.sleep(1)
  server <- serverSocket(port)
  on.exit(close(server), add = TRUE)
  con <- socketAccept(server, blocking = TRUE, open = "a+b", timeout = 30)
  node <- structure(list(con = con), class = "SOCK0node")
  task <- function() c(Sys.getpid(), "parallel" %in% loadedNamespaces())
  environment(task) <- baseenv()  # (the test's environment would load our package there)
  parallel:::sendCall(node, task, list(), tag = 3L)
  msg <- parallel:::recvData(node)
  expect_true(msg$success)
  expect_identical(msg$tag, 3L)
  expect_identical(msg$value[2], 0L)
  pid <- as.integer(msg$value[1])
  parallel:::postNode(node, "DONE")
  close(con)
  # DONE ends it.
  deadline <- Sys.time() + 10
  while (dir.exists(sprintf("/proc/%d", pid)) && Sys.time() < deadline) Sys.sleep(0.05)
  expect_false(dir.exists(sprintf("/proc/%d", pid)))
})

test_that("a local worker of another R launcher gets base R's entry code (our compiled one is for this R)", {
  mine <- makeNodePSOCK("localhost", port = 11562L, action = "options")
  expect_match(mine$cmd, "readRDS(", fixed = TRUE)
  expect_true(file.exists(parallelly:::lean_worker_entry_file()))
  other <- makeNodePSOCK("localhost", port = 11562L, action = "options", rscript = c("MY_VAR=1", "*"))
  expect_match(other$cmd, "parallel:::.workRSOCK", fixed = TRUE)
  expect_false(grepl("readRDS(", other$cmd, fixed = TRUE))
  cl <- local_cluster(1, rscript = c("MY_VAR=1", "*"))
  expect_identical(parallel::clusterEvalQ(cl, Sys.getenv("MY_VAR")), list("1"))
  expect_identical(parallel::clusterCall(cl, worker_loop_kind), list("parallel"))
})

test_that("a worker waits for the entry file its launcher writes after starting it", {
  path <- parallelly:::lean_worker_entry_path()
  expect_identical(path, file.path(tempdir(), "parallelly-worker-entry.rds"))
  # Written by the launch of a first cluster, as the workers start.
  cl <- local_cluster(1)
  expect_true(file.exists(path))
  # Gone: the code alone does not write it; a worker started then waits for it.
  unlink(path)
  code <- parallelly:::lean_worker_entry_code()
  expect_false(file.exists(path))
  expect_false(grepl("[][*?\\\\]", code))  # what R's front-end script can pass on
  port <- parallelly::freePort()
  server <- serverSocket(port)
  on.exit(close(server), add = TRUE)
  system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code), "MASTER=127.0.0.1", paste0("PORT=", port), "OUT=",
          "SETUPTIMEOUT=30", "XDR=FALSE"), wait = FALSE, stdout = FALSE, stderr = FALSE)
  Sys.sleep(1)
  expect_false(file.exists(path))
  expect_false(socketSelect(list(server), timeout = 0))
  expect_identical(parallelly:::lean_worker_entry_file(), path)
  con <- socketAccept(server, blocking = TRUE, open = "a+b", timeout = 30)
  on.exit(close(con), add = TRUE)
  node <- structure(list(con = con), class = "SOCK0node")
  parallel:::sendCall(node, worker_loop_kind, list(), tag = 1L)
  expect_identical(parallel:::recvData(node)$value, "lean")
  parallel:::postNode(node, "DONE")
})

test_that("a worker of this R runs base R's loop from the entry file when ours failed its check", {
  state <- parallelly:::.package
  old <- state$internals_ok
  on.exit({
    state$internals_ok <- old
    unlink(parallelly:::lean_worker_entry_path())
    state$lean_entry_file <- NULL
  }, add = TRUE)
  unlink(parallelly:::lean_worker_entry_path())
  state$lean_entry_file <- NULL
  # As if the check had run and failed on this R.
  state$internals_ok$work_loop <- FALSE
  entry <- readRDS(parallelly:::lean_worker_entry_file())
  expect_identical(environment(entry), baseenv())
  expect_match(paste(deparse(body(entry)), collapse = " "), ".workRSOCK", fixed = TRUE)
  cl <- local_cluster(1)
  expect_match(parallelly:::node_options(cl[[1]])$cmd, "parallelly-worker-entry.rds", fixed = TRUE)
  expect_identical(parallel::clusterCall(cl, worker_loop_kind), list("parallel"))
  expect_identical(parallel::clusterEvalQ(cl, 1L + 1L), list(2L))
})
