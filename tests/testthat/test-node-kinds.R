# Node kinds (R/nodeKind.R): every kind has the whole interface, every node records its kind,
# and a kind added from outside the operations' files is used by all of them.

test_that("every node kind has the whole interface", {
  kinds <- parallelly:::node_kinds()
  expect_true(all(c("local", "fork", "ssh", "rsh") %in% names(kinds)))
  for (kind in kinds) {
    missing <- setdiff(parallelly:::kind_interface_fields, names(kind))
    expect_identical(missing, character(0), label = sprintf("missing fields of kind '%s'", kind$name))
    fns <- setdiff(parallelly:::kind_interface_fields, c("name", "priority"))
    expect_true(all(vapply(kind[fns], is.function, logical(1))), label = kind$name)
  }
  # Kinds claim options in increasing priority: the external client is the last resort.
  expect_identical(tail(names(kinds), 1L), "rsh")
})

test_that("the order in which kinds claim options, made at install, is that of the kinds themselves", {
  kinds <- parallelly:::node_kinds()
  order <- parallelly:::kind_claim_order
  expect_identical(names(order), names(kinds))
  # Every kind's file is in it, found independently of it.
  files <- ls(asNamespace("parallelly"), pattern = "^node_kind_[a-z]+$")
  expect_setequal(paste0("node_kind_", names(order)), files)
  for (name in names(kinds)) {
    expect_identical(order[[name]]$priority, kinds[[name]]$priority)
    expect_identical(order[[name]]$claims, kinds[[name]]$claims)
    expect_identical(order[[name]]$rshcmd, kinds[[name]]$rshcmd)
  }
  # A fresh session chooses the kind of a local launch without fetching the others.
  out <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(paste(
    "ns <- asNamespace('parallelly');",
    "k <- ns$kind_for_options(list(worker = structure('localhost', localhost = TRUE)));",
    "cat(k$name, is.null(ns$.package$node_kinds), '\\n')"))), stdout = TRUE, stderr = TRUE)
  expect_identical(trimws(tail(out, 1L)), "local TRUE")
  expect_identical(parallelly:::node_kind("local"), kinds$local)
  expect_error(parallelly:::node_kind("no-such-kind"), "Unknown node kind")
})

test_that("a node that records no kind is adopted by the kind that says so, not by a name in the operations", {
  expect_identical(parallelly:::adopting_kind(TRUE), "local")
  expect_identical(parallelly:::adopting_kind(FALSE), "rsh")
  cl <- makeClusterPSOCK(1, setup_strategy = "sequential")
  on.exit(parallel::stopCluster(cl))
  node <- cl[[1]]
  attr(node, "process")$kind <- NULL
  expect_identical(parallelly:::node_identity(node)$kind, "local")
  expect_identical(isNodeAlive(node), TRUE)
})

test_that("nodes record their kind: local children and forked workers", {
  cl <- makeClusterPSOCK(2, setup_strategy = "sequential")
  on.exit(parallel::stopCluster(cl))
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), c("local", "local"))
  fl <- makeClusterPSOCK(2, setup_strategy = "fork")
  on.exit(parallel::stopCluster(fl), add = TRUE)
  expect_identical(vapply(fl, function(node) attr(node, "process")$kind, ""), c("fork", "fork"))
  expect_identical(parallelly:::node_identity(fl[[1]])$kind, "fork")
})

test_that("a kind added at run time is used by setup and by every operation", {
  calls <- new.env(parent = emptyenv())
  count <- function(what) assign(what, get0(what, envir = calls, inherits = FALSE, ifnotfound = 0L) + 1L, envir = calls)
  local <- parallelly:::node_kind_local
  # A kind of its own that starts local children, recording each operation it is asked for.
  wrap <- function(name) {
    force(name)
    function(...) { count(name); local[[name]](...) }
  }
  kind <- local
  kind$name <- "counted"
  kind$priority <- 1
  kind$claims <- function(opts) isTRUE(getOption("test.counted.kind"))
  kind$launcher <- function(opts) {
    count("launcher")
    l <- local$launcher(opts)
    l$kind <- "counted"
    l
  }
  for (name in c("probe", "signal", "stop", "exit_cause", "usage", "last_output", "after_kill")) kind[[name]] <- wrap(name)
  parallelly:::register_node_kind(kind)
  on.exit(parallelly:::register_node_kind(NULL, name = "counted"), add = TRUE)
  old <- options(test.counted.kind = TRUE)
  on.exit(options(old), add = TRUE)

  cl <- makeClusterPSOCK(2, setup_strategy = "sequential")
  options(old)
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), c("counted", "counted"))
  expect_identical(calls[["launcher"]], 2L)
  expect_identical(unlist(parallel::clusterEvalQ(cl, 1 + 1)), c(2, 2))
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  # One request for the whole group, not one per node.
  expect_identical(calls[["probe"]], 1L)
  pids <- vapply(cl, function(node) attr(node, "process")$pid, 0L)
  expect_true(killNode(cl[[2]]))
  expect_identical(calls[["signal"]], 1L)
  expect_identical(calls[["after_kill"]], 1L)
  expect_true(parallelly:::wait_until(function() isFALSE(isNodeAlive(cl[[2]])), timeout = 10))
  s <- summary(cl)
  expect_identical(s$alive, c(TRUE, FALSE))
  expect_match(s$exit[2], "SIGTERM")
  expect_true(s$rss[1] > 0)
  expect_gte(calls[["exit_cause"]], 1L)
  expect_gte(calls[["usage"]], 1L)
  expect_output(print(cl[[2]]), "no longer running")
  expect_gte(calls[["last_output"]], 1L)
  parallel::stopCluster(cl)
  expect_identical(calls[["stop"]], 1L)
  expect_true(parallelly:::wait_until(function() !any(parallelly:::backend_probe(pids) %in% TRUE), timeout = 10))
})

test_that("the three ways to stop processes share one TERM -> wait -> KILL loop", {
  # A process that ignores SIGTERM is killed after the grace period; one that obeys is not.
  stubborn <- parallelly:::backend_launch("/bin/sh", c("-c", "trap '' TERM; sleep 60"))
  obeying <- parallelly:::backend_launch("/bin/sleep", "60")
  Sys.sleep(0.2)
  expect_true(parallelly:::terminate_processes(c(stubborn$pid, obeying$pid), grace = 0.5))
  expect_identical(parallelly:::backend_probe(c(stubborn$pid, obeying$pid)), c(FALSE, FALSE))
})

test_that("remote nodes record kind 'ssh'; probes and kills reuse the open connection", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"))
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), c("ssh", "ssh"))
  connects <- 0L
  suppressMessages(trace(parallelly:::backend_ssh_connect, quote(connects <<- connects + 1L), print = FALSE,
                         where = asNamespace("parallelly")))
  on.exit(suppressMessages(untrace(parallelly:::backend_ssh_connect, where = asNamespace("parallelly"))), add = TRUE)
  for (i in 1:3) expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  s <- summary(cl)
  expect_true(all(s$rss > 0))
  expect_true(killNode(cl[[2]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(TRUE, FALSE)), timeout = 10))
  expect_identical(connects, 0L)
})

test_that("a fork-server refusal expires: soon after a failure, later after an answer", {
  key <- "test-refusal-key"
  on.exit(suppressWarnings(rm(list = key, envir = parallelly:::.package$fork_refusals)), add = TRUE)
  expect_false(parallelly:::fork_refused(key))
  parallelly:::fork_refuse(key, answered = FALSE)
  expect_true(parallelly:::fork_refused(key))
  until <- get(key, envir = parallelly:::.package$fork_refusals)
  expect_lte(as.numeric(difftime(until, Sys.time(), units = "secs")), 60)
  parallelly:::fork_refuse(key, answered = TRUE)
  until <- get(key, envir = parallelly:::.package$fork_refusals)
  expect_gt(as.numeric(difftime(until, Sys.time(), units = "secs")), 600)
  # Once expired, the host is asked again (the entry goes).
  assign(key, Sys.time() - 1, envir = parallelly:::.package$fork_refusals)
  expect_false(parallelly:::fork_refused(key))
  expect_false(exists(key, envir = parallelly:::.package$fork_refusals, inherits = FALSE))
})

test_that("a launcher has no stop or output of its own: a failed setup asks the kind", {
  # One interface per kind: what a worker wrote and how it is stopped are said once, by the kind.
  launcher <- parallelly:::local_launcher()
  expect_false(any(c("stop", "log_tail") %in% names(launcher)))
  calls <- new.env(parent = emptyenv())
  local <- parallelly:::node_kind_local
  kind <- local
  kind$name <- "counted"
  kind$priority <- 1
  kind$claims <- function(opts) isTRUE(getOption("test.counted.kind"))
  kind$launcher <- function(opts) {
    l <- local$launcher(opts)
    l$kind <- "counted"
    l
  }
  kind$stop <- function(ids, background, grace = 5) {
    assign("stop", list(n = length(ids), grace = grace, background = background), envir = calls)
    local$stop(ids, background, grace)
  }
  kind$last_output <- function(id, n) {
    assign("last_output", c(get0("last_output", envir = calls, ifnotfound = integer(0)), id$pid), envir = calls)
    local$last_output(id, n)
  }
  parallelly:::register_node_kind(kind)
  on.exit(parallelly:::register_node_kind(NULL, name = "counted"), add = TRUE)
  # The first worker says something and exits; the other never connects.
  dir <- tempfile("kinds-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  script <- file.path(dir, "rscript")
  writeLines(c("#!/bin/sh",
               sprintf("if mkdir '%s/first' 2>/dev/null; then echo 'last words before exit 3'; sleep 1; exit 3; fi", dir),
               sprintf("echo $$ > '%s/sleeper'; exec sleep 60", dir)), script)
  Sys.chmod(script, "0755")
  withr::local_options(test.counted.kind = TRUE)
  t0 <- Sys.time()
  err <- tryCatch(makeClusterPSOCK(2, rscript = script, setup_strategy = "parallel", outfile = "/dev/null",
                                   connectTimeout = 20),
                  error = function(e) e)
  took <- as.double(difftime(Sys.time(), t0, units = "secs"))
  expect_s3_class(err, "PSOCKConnectionError")
  expect_match(conditionMessage(err), "exited with status 3")
  expect_match(conditionMessage(err), "Its last output was:\n   last words before exit 3", fixed = TRUE)
  expect_gte(length(calls[["last_output"]]), 1L)
  # The kind's stop, with no grace (the workers were never told to finish): the other is gone at once.
  expect_identical(calls[["stop"]]$grace, 0)
  expect_false(calls[["stop"]]$background)
  expect_lt(took, 5.5)
  expect_true(parallelly:::wait_until(function() file.exists(file.path(dir, "sleeper")), timeout = 5))
  sleeper <- as.integer(readLines(file.path(dir, "sleeper")))
  expect_true(parallelly:::wait_until(function() !isTRUE(parallelly:::backend_probe(sleeper)), timeout = 2))
})
