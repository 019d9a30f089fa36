# future reads the argument names of makeClusterPSOCK() and makeNodePSOCK() to know what to
# forward, and keeps what it read when it was installed (future 1.75 computes the list while
# its namespace is built, so the lazy-load database holds the names of the parallelly that
# was installed then). Ours has exactly the reference's names, so that list is right
# whichever of the two future was built against; autoRestart, retries and rscript_call go
# through `...` and options.

psock_argument_names <- function(ns) {
  setdiff(unique(c(names(formals(get("makeClusterPSOCK", envir = ns))),
                   names(formals(get("makeNodePSOCK", envir = ns))))), "...")
}

test_that("the argument names are the reference 1.47's, the extras are not among them", {
  ours <- psock_argument_names(asNamespace("parallelly"))
  expect_length(ours, 37L)
  expect_false(any(c("autoRestart", "retries", "rscript_call") %in% ours))
  # The reference, where it is installed beside ours (the R 4.6 environment has 1.47).
  ref_lib <- "/usr/lib/R/site-library"
  ref <- rscript_output(c("-e", paste0(
    "ns <- loadNamespace('parallelly', lib.loc = '", ref_lib, "');",
    "if (packageVersion('parallelly', lib.loc = '", ref_lib, "') >= '1.47.0') ",
    "cat(setdiff(unique(c(names(formals(ns$makeClusterPSOCK)), names(formals(ns$makeNodePSOCK)))), '...'), sep = '\\n')")))
  if (length(ref) > 0L) expect_setequal(ours, as.character(ref))
})

test_that("future's cached argument list is the list it reads from ours now", {
  skip_if_not_installed("future")
  fun <- get0("makeClusterPSOCK_args", envir = asNamespace("future"), inherits = FALSE)
  skip_if(is.null(fun), "this future has no makeClusterPSOCK_args() (before 1.40)")
  cached <- fun()
  env <- environment(fun)
  old <- env$.args
  on.exit(env$.args <- old, add = TRUE)
  env$.args <- NULL
  fresh <- fun()
  expect_setequal(fresh, psock_argument_names(asNamespace("parallelly")))
  expect_setequal(cached, fresh)
})

test_that("autoRestart and retries reach future's workers through options", {
  skip_if_not_installed("future")
  withr::local_options(parallelly.makeNodePSOCK.autoRestart = 2L, parallelly.makeNodePSOCK.retries = 1L)
  cl <- local_cluster(1)
  expect_identical(parallelly:::node_options(cl[[1]])$autoRestart, 2L)
  expect_identical(parallelly:::node_options(cl[[1]])$retries, 1L)
  oplan <- future::plan(future::multisession, workers = 2)
  on.exit(future::plan(oplan), add = TRUE)
  pid <- future::value(future::future(Sys.getpid()))
  # the worker future started is self-healing: killed, it is relaunched for the next future
  tools::pskill(pid)
  expect_true(wait_for(function() !process_running(pid)))
  pids <- unlist(future::value(lapply(1:4, function(i) future::future(Sys.getpid()))))
  expect_false(pid %in% pids)
  expect_true(all(vapply(pids, process_running, NA)))
  # arguments still work too
  cl <- local_cluster(1, autoRestart = 3L)
  expect_identical(parallelly:::node_options(cl[[1]])$autoRestart, 3L)
})
