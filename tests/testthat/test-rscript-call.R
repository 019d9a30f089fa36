# makeNodePSOCK(rscript_call = ) and option parallelly.makeNodePSOCK.rscript_call: the R code
# that starts a worker's loop.

test_that("a worker runs its rscript_call, a string or a call", {
  code <- "assign('started_by', 'rscript_call', envir = globalenv()); parallel:::.workRSOCK()"
  cl <- local_cluster(1, rscript_call = code)
  expect_identical(parallel::clusterEvalQ(cl, started_by)[[1]], "rscript_call")
  expect_identical(parallelly:::node_options(cl[[1]])$setup_strategy, "parallel")  # not forked
  expect_true(grepl("started_by", parallelly:::node_options(cl[[1]])$cmd, fixed = TRUE))

  cl <- local_cluster(1, rscript_call = quote({ options(my.marker = 42); parallel:::.workRSOCK() }),
                      setup_strategy = "fork")
  expect_identical(parallel::clusterEvalQ(cl, getOption("my.marker"))[[1]], 42)
  expect_identical(parallelly:::node_options(cl[[1]])$setup_strategy, "parallel")
  # a relaunched worker runs it too
  node <- cloneNode(cl[[1]])
  on.exit(parallel::stopCluster(as.cluster(node)), add = TRUE)
  expect_identical(parallel::clusterEvalQ(as.cluster(node), getOption("my.marker"))[[1]], 42)
})

test_that("option parallelly.makeNodePSOCK.rscript_call is the default", {
  withr::local_options(parallelly.makeNodePSOCK.rscript_call =
                         "Sys.setenv(STARTED_BY = 'option'); parallel:::.workRSOCK()")
  opts <- makeNodePSOCK(port = 12345L, action = "options")
  expect_match(opts$cmd, "Sys.setenv(STARTED_BY = 'option')", fixed = TRUE)
  cl <- local_cluster(1)
  expect_identical(parallel::clusterEvalQ(cl, Sys.getenv("STARTED_BY"))[[1]], "option")
  # an argument wins over the option
  opts <- makeNodePSOCK(port = 12345L, action = "options", rscript_call = "parallel:::.workRSOCK()")
  expect_false(grepl("STARTED_BY", opts$cmd, fixed = TRUE))
})

test_that("bad rscript_call values and unknown arguments are errors naming them", {
  for (bad in list("foo{", "", NA_character_, c("a()", "b()"), 42)) {
    expect_error(makeNodePSOCK(port = 12345L, action = "options", rscript_call = bad),
                 "rscript_call", class = "parallellyArgumentError")
  }
  expect_error(makeNodePSOCK(port = 12345L, action = "options", no_such_argument = 1),
               "no_such_argument", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, no_such_argument = 1), "no_such_argument",
               class = "parallellyArgumentError")
})
