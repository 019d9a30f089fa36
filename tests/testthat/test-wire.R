# The per-message path (R/nodeTraffic.R): what our sendData() puts on the wire, and that
# workers of either loop (ours, base R's) answer it as before.

base_loop_cluster <- function(n = 1L, env = parent.frame()) {
  local_cluster(n, rscript_args = c("-e", "parallel:::.workRSOCK()"), env = env)
}

test_that("a task numbers its tag and names eval/lapply instead of carrying them", {
  cl <- local_cluster(1)
  state <- parallelly:::node_state(cl[[1]])
  msg <- list(type = "EXEC", data = list(fun = eval, args = list(quote(1)), return = TRUE, tag = NULL), tag = NULL)
  sent <- parallelly:::number_task(state, msg)
  expect_identical(sent$data$fun, "eval")
  expect_identical(sent$data$args, msg$data$args)
  seq <- attr(sent$data$tag, "parallellySeq")
  expect_true(is.integer(seq) && seq < 0L)  # a NULL tag: FALSE numbered with the number negated
  msg$data$fun <- lapply
  msg$data$tag <- 7L
  sent <- parallelly:::number_task(state, msg)
  expect_identical(sent$data$fun, "lapply")
  expect_identical(attr(sent$data$tag, "parallellySeq"), -seq + 1L)
  # Any other function travels as itself.
  f <- function(x) x
  msg$data$fun <- f
  expect_identical(parallelly:::number_task(state, msg)$data$fun, f)
  # The caller's tag comes back as it was.
  reply <- list(type = "VALUE", value = 1, success = TRUE, time = NULL, tag = sent$data$tag)
  expect_identical(parallelly:::accept_message(state, reply)$tag, 7L)
})

test_that("a worker's own eval or lapply does not take the place of base's", {
  for (cl in list(local_cluster(2), base_loop_cluster(2))) {
    parallel::clusterEvalQ(cl, {
      assign("eval", function(...) stop("global eval called"), envir = globalenv())
      assign("lapply", function(...) stop("global lapply called"), envir = globalenv())
      NULL
    })
    expect_identical(parallel::clusterEvalQ(cl, 1 + 1), list(2, 2))
    expect_identical(unlist(parallel::parLapply(cl, 1:6, function(x) x * 2)), (1:6) * 2)
    expect_identical(unlist(parallel::parLapplyLB(cl, 1:6, function(x) -x, chunk.size = 1)), -(1:6))
    expect_error(parallel::clusterEvalQ(cl, stop("task error")), "task error")
    expect_identical(parallel::clusterEvalQ(cl, exists("eval", envir = globalenv(), inherits = FALSE)), list(TRUE, TRUE))
  }
})

test_that("large values travel both ways, on both loops", {
  big <- as.numeric(seq_len(300000))  # 2.4 MB
  for (cl in list(local_cluster(1), base_loop_cluster(1))) {
    back <- parallel::clusterCall(cl, function(v) rev(v), big)[[1]]
    expect_identical(back, rev(big))
    expect_identical(parallel::clusterEvalQ(cl, sum(as.numeric(1:2e5)))[[1]], sum(as.numeric(1:2e5)))
  }
})

test_that("future's multisession futures and socketSelect() on the node work after many tasks", {
  skip_if_not_installed("future")
  cl <- local_cluster(2)
  for (i in 1:50) parallel::clusterEvalQ(cl, NULL)
  expect_false(any(socketSelect(lapply(cl, function(node) node$con), timeout = 0)))
  parallel:::sendCall(cl[[1]], fun = function() 42, args = list())
  expect_true(wait_for(function() isTRUE(socketSelect(list(cl[[1]]$con), timeout = 0.1)), timeout = 10))
  expect_identical(parallel:::recvResult(cl[[1]]), 42)
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  fs <- lapply(1:4, function(i) future::future(i * 10))
  expect_identical(unlist(future::value(fs)), (1:4) * 10)
  f <- future::future(Sys.getpid())
  expect_true(wait_for(function() future::resolved(f), timeout = 10))
  expect_true(future::value(f) %in% unlist(parallel::clusterEvalQ(cl, Sys.getpid())))
})
