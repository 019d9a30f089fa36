# Nested futures and futures created in awkward places (tests/testthat/scripts/nested-futures.R),
# run with our package and, side by side, with the reference where it is installed.

skip_if_not_installed("future")
skip_if_not_installed("future.apply")
skip_if_not_installed("furrr")

run_family <- function(libs = NULL) {
  script <- testthat::test_path("scripts", "nested-futures.R")
  env <- if (!is.null(libs)) paste0("R_LIBS=", libs) else character()
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), shQuote(script), env = env,
                                  stdout = TRUE, stderr = TRUE, timeout = 240))
  out
}

expect_family_passes <- function(out, version) {
  expect_match(out[1], sprintf("^parallelly %s ", version))
  expect_true("DONE" %in% trimws(out), info = paste(out, collapse = "\n"))
  cases <- grep("^(ok|FAIL) ", out, value = TRUE)
  expect_length(cases, 13L)
  expect_identical(grep("^FAIL", cases, value = TRUE), character(0))
}

test_that("nested futures and futures inside lapply/tryCatch/local/trace work on our clusters", {
  expect_family_passes(run_family(), "2.0.0")
})

test_that("the same family passes with the reference package", {
  ref <- "/usr/lib/R/site-library"
  skip_if_not(file.exists(file.path(ref, "parallelly", "DESCRIPTION")), "Debian's r-cran-parallelly is not installed")
  version <- read.dcf(file.path(ref, "parallelly", "DESCRIPTION"), fields = "Version")[1, 1]
  expect_false(identical(version, "2.0.0"))
  expect_family_passes(run_family(ref), version)
})

test_that("a call stack passed as `calls` (as future does) leaves the node's hash stable", {
  make <- function() makeClusterPSOCK(1, calls = sys.calls())
  cl <- make()
  on.exit(parallel::stopCluster(cl))
  expect_identical(parallelly:::node_options(cl[[1]])$arguments$calls, FALSE)
  expect_false(parallelly:::node_options(cl[[1]])$calls)
  before <- serialize(cl, NULL)
  f <- function() parallel::clusterEvalQ(cl, 1)
  f()
  expect_identical(serialize(cl, NULL), before)
  expect_error(makeClusterPSOCK(1, calls = "yes"), "calls")
})
