# makeClusterSequential(): a one-node cluster evaluated in this R session; the cluster types.

test_that("parallel's functions run on a sequential cluster, in this session", {
  cl <- makeClusterSequential()
  on.exit(parallel::stopCluster(cl), add = TRUE)
  expect_s3_class(cl, c("sequential_cluster", "cluster"), exact = TRUE)
  expect_length(cl, 1L)
  expect_identical(parallel::parLapply(cl, 1:3, sqrt), lapply(1:3, sqrt))
  expect_identical(parallel::clusterEvalQ(cl, Sys.getpid())[[1]], Sys.getpid())
  expect_identical(unlist(parallel::clusterApplyLB(cl, 1:4, function(x) x * 10)), (1:4) * 10)
  expect_identical(parallel::parSapply(cl, 1:5, function(x) x^2), (1:5)^2)
  withr::local_options(useFancyQuotes = FALSE)
  expect_output(print(cl), "A 'sequential_cluster' cluster with 1 node")
  expect_output(print(cl[[1]]), "A 'sequential_node' node")
})

test_that("assignments stay in the node's environment, not the global one", {
  cl <- makeClusterSequential()
  on.exit(parallel::stopCluster(cl), add = TRUE)
  name <- sprintf("seq_test_%d", Sys.getpid())
  on.exit(if (exists(name, envir = globalenv())) rm(list = name, envir = globalenv()), add = TRUE)
  assign(name, 3.14, envir = globalenv())
  expr <- parse(text = sprintf("{ %s <- 42; %s }", name, name))[[1]]
  got <- do.call(parallel::clusterEvalQ, list(cl, expr))
  expect_identical(got[[1]], 42)
  expect_identical(get(name, envir = globalenv()), 3.14)
  # the node's environment inherits the global one
  expect_identical(parallel::clusterCall(cl, function(n) get(n), name)[[1]], 3.14)
  # clusterExport() exports to the node's environment too
  exported <- sprintf("seq_export_%d", Sys.getpid())
  local({
    assign(exported, "from a function", envir = environment())
    parallel::clusterExport(cl, exported, envir = environment())
  })
  expect_false(exists(exported, envir = globalenv()))
  expect_identical(do.call(parallel::clusterEvalQ, list(cl, as.name(exported)))[[1]], "from a function")
})

test_that("errors come back as parallel's, and a stopped node refuses work", {
  cl <- makeClusterSequential()
  expect_error(parallel::clusterEvalQ(cl, stop("boom")), "boom")
  expect_identical(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)  # still usable after an error
  parallel::stopCluster(cl)
  expect_error(parallel::clusterEvalQ(cl, 1), "was stopped", class = "parallellyArgumentError")
})

test_that("future runs on a sequential cluster", {
  skip_if_not_installed("future")
  cl <- makeClusterSequential()
  on.exit(parallel::stopCluster(cl), add = TRUE)
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  f <- future::future(Sys.getpid())
  expect_identical(future::value(f), Sys.getpid())
  expect_identical(future::value(future::future(sum(1:10))), 55L)
})

test_that("RPSOCK, RMPI and SEQ are registered cluster types with R >= 4.5, plain names before", {
  expect_identical(c(RPSOCK, RMPI, SEQ), c("parallelly::RPSOCK", "parallelly::RMPI", "parallelly::SEQ"))
  register <- get0("registerClusterType", envir = asNamespace("parallel"), mode = "function")
  if (getRversion() < "4.5.0") {
    expect_null(register)  # nothing to register with: the package loaded all the same
    return(invisible())
  }
  expect_true(is.function(register))
  cl <- parallel::makeCluster(type = SEQ)
  expect_s3_class(cl, "sequential_cluster")
  expect_identical(parallel::clusterEvalQ(cl, Sys.getpid())[[1]], Sys.getpid())
  parallel::stopCluster(cl)
  expect_s3_class(parallel::makeCluster(1, type = SEQ), "sequential_cluster")
  expect_error(parallel::makeCluster(2, type = SEQ), "'spec'", class = "parallellyArgumentError")
  cl <- parallel::makeCluster(2, type = RPSOCK)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  expect_s3_class(cl, "RichSOCKcluster")
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
})
