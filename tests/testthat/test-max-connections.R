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
