# Many workers on one master: each worker holds one R connection. R >= 4.4 raises R's limit
# (128) with --max-connections; the count is checked before anything is launched.

test_that("more workers than free connections fail before anything is launched", {
  before <- parallelly:::backend_running_children()
  n <- freeConnections() + 5L
  err <- tryCatch(makeClusterPSOCK(I(n)), error = identity)
  expect_s3_class(err, "parallellyArgumentError")
  expect_match(conditionMessage(err), sprintf("Cannot create %d parallel PSOCK nodes", n), fixed = TRUE)
  expect_match(conditionMessage(err), sprintf("out of the maximum %d", availableConnections()), fixed = TRUE)
  expect_match(conditionMessage(err), "--max-connections=N", fixed = TRUE)
  expect_identical(parallelly:::backend_running_children(), before)
})

test_that("a fork server's connection is counted before anything is launched", {
  before <- parallelly:::backend_running_children()
  # Room for 3 workers (and the setup's check), not for their fork server as well.
  withr::local_options(parallelly.availableConnections = length(getAllConnections()) + 4L)
  err <- tryCatch(makeClusterPSOCK(I(3), setup_strategy = "fork"), error = identity)
  expect_s3_class(err, "parallellyArgumentError")
  expect_match(conditionMessage(err), "Cannot create 3 parallel PSOCK nodes", fixed = TRUE)
  expect_match(conditionMessage(err), "the fork server of each of 1 hosts (4 in all", fixed = TRUE)
  expect_match(conditionMessage(err), "--max-connections=N", fixed = TRUE)
  expect_identical(parallelly:::backend_running_children(), before)
  # Without a fork server the same workers fit.
  cl <- makeClusterPSOCK(I(3), setup_strategy = "parallel")
  withr::defer(parallel::stopCluster(cl))
  expect_identical(isNodeAlive(cl), rep(TRUE, 3L))
})

test_that("availableCores(constraints = 'connections') counts the connections left", {
  all <- availableCores(constraints = "connections", which = "all")
  expect_identical(unname(all[["connections"]]), as.integer(freeConnections()))
  all10 <- availableCores(constraints = "connections-10", which = "all")
  expect_identical(unname(all10[["connections-10"]]), as.integer(freeConnections()) - 10L)
})

test_that("with --max-connections (R >= 4.4) 200 local workers start, answer and stop", {
  skip_if(getRversion() < "4.4.0", "R < 4.4 has a fixed limit of 128 connections")
  script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    'library(parallelly)',
    'cat("max", availableConnections(), "\\n")',
    'cat("connections", availableCores(constraints = "connections", which = "all")[["connections"]], "\\n")',
    'cl <- makeClusterPSOCK(I(200))',
    'cat("alive", sum(isNodeAlive(cl)), "\\n")',
    'cat("pids", length(unique(unlist(parallel::clusterEvalQ(cl, Sys.getpid())))), "\\n")',
    'cat("sum", sum(unlist(parallel::parLapply(cl, 1:400, identity))), "\\n")',
    'parallel::stopCluster(cl)',
    'cat("free", freeConnections(), "\\n")'
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--max-connections=300", shQuote(script)),
                 stdout = TRUE, stderr = TRUE)
  facts <- do.call(rbind, strsplit(grep("^(max|connections|alive|pids|sum|free) ", out, value = TRUE), " "))
  facts <- setNames(as.numeric(facts[, 2]), facts[, 1])
  expect_identical(facts[["max"]], 300, info = paste(out, collapse = "\n"))
  expect_gte(facts[["connections"]], 290)
  expect_identical(facts[["alive"]], 200)
  expect_identical(facts[["pids"]], 200)
  expect_identical(facts[["sum"]], as.numeric(sum(1:400)))
  expect_identical(facts[["free"]], facts[["connections"]])
})

test_that("with --max-connections (R >= 4.4) 8 hosts x 32 forked workers start, answer and stop", {
  skip_if(getRversion() < "4.4.0", "R < 4.4 has a fixed limit of 128 connections (8 x 32 workers and 8 fork servers need 264)")
  hosts <- skip_if_no_fork_hosts()
  local_ssh_env(hosts)  # the environment the script below inherits
  before <- lapply(fork_hosts, remote_r_pids, hosts = hosts)
  script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    'library(parallelly)',
    sprintf('hosts <- c(%s)', paste(dQuote(fork_hosts, q = FALSE), collapse = ", ")),
    't0 <- Sys.time()',
    'cl <- makeClusterPSOCK(rep(hosts, each = 32), setup_strategy = "fork")',
    'cat("setup", format(as.double(Sys.time() - t0, units = "secs")), "\\n")',
    'cat("alive", sum(isNodeAlive(cl)), "\\n")',
    'cat("forked", sum(vapply(cl, function(node) identical(attr(node, "process")$kind, "fork"), TRUE)), "\\n")',
    'where <- unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]]))',
    'cat("placed", sum(where == rep(hosts, each = 32)), "\\n")',
    'cat("pids", length(unique(paste(where, unlist(parallel::clusterEvalQ(cl, Sys.getpid()))))), "\\n")',
    'cat("sum", sum(unlist(parallel::parLapply(cl, 1:512, identity))), "\\n")',
    'parallel::stopCluster(cl)',
    'cat("free", freeConnections(), availableCores(constraints = "connections", which = "all")[["connections"]], "\\n")'
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--max-connections=400", shQuote(script)),
                 stdout = TRUE, stderr = TRUE, timeout = 600)
  info <- paste(out, collapse = "\n")
  facts <- do.call(rbind, lapply(strsplit(grep("^(setup|alive|forked|placed|pids|sum|free) ", out, value = TRUE), " "), `[`, 1:3))
  expect_identical(sort(facts[, 1]), sort(c("setup", "alive", "forked", "placed", "pids", "sum", "free")), info = info)
  value <- setNames(as.numeric(facts[, 2]), facts[, 1])
  expect_identical(value[["alive"]], 256, info = info)
  expect_identical(value[["forked"]], 256)
  expect_identical(value[["placed"]], 256)
  expect_identical(value[["pids"]], 256)
  expect_identical(value[["sum"]], as.numeric(sum(1:512)))
  # Every connection is given back.
  expect_identical(value[["free"]], as.numeric(facts[facts[, 1] == "free", 3]))
  # And every worker and fork server on the hosts is gone.
  for (k in seq_along(fork_hosts)) {
    expect_true(wait_for(function() setequal(remote_r_pids(fork_hosts[k], hosts), before[[k]]), timeout = 20), info = fork_hosts[k])
  }
  message(sprintf("8 hosts x 32 forked workers: setup %.2f s", value[["setup"]]))
})
