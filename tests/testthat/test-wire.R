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
  # ...a FALSE of its own: R's shared FALSE (and the caller's message) are not changed.
  expect_null(attributes(FALSE))
  expect_null(attributes(isTRUE(NA)))
  expect_null(msg$data$tag)
  expect_identical(msg$data$fun, eval)
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
  expect_identical(attr(reply$tag, "parallellySeq"), attr(sent$data$tag, "parallellySeq"))  # not changed in place
  # A message of another type, or a tag that cannot carry the number, goes as it is.
  expect_identical(parallelly:::number_task(state, list(type = "DONE")), list(type = "DONE"))
  msg$data$tag <- new.env()
  expect_identical(parallelly:::number_task(state, msg), msg)
})

test_that("messages of any shape are numbered, read back or passed through, never changed in place", {
  # What a worker sends back is whatever it unserialized: the Rust routines that take the
  # number off (and put it on) must take any R object without crashing or changing it.
  cl <- local_cluster(1)
  state <- parallelly:::node_state(cl[[1]])
  set.seed(26)
  shapes <- list(NULL, 1L, "x", list(), list(1, 2), list(tag = 1), list(type = "VALUE"),
                 structure(list(1, 2), names = c("tag", NA)), list(tag = NULL), quote(f(x)),
                 local(function() 1, baseenv()), new.env(parent = emptyenv()), as.pairlist(list(tag = 1)), NA,
                 list(type = NA, data = list(tag = 1)))
  seqs <- list(1L, -3L, NA_integer_, 2.5, 4, "7", c(1L, 2L), integer(0), list(1L), TRUE, .Machine$integer.max, -.Machine$integer.max, 1e10)
  for (i in 1:300) {
    # (Environments and functions enclosed by the empty or base environment: serialize(),
    # which tells whether a message changed, would take this test's frame along.)
    tag <- sample(list(NULL, FALSE, 3L, "job", list(a = 1), new.env(parent = emptyenv())), 1L)[[1L]]
    if (!is.null(tag) && !is.environment(tag) && runif(1) < 0.8) attr(tag, "parallellySeq") <- sample(seqs, 1L)[[1L]]
    msg <- if (runif(1) < 0.5) sample(shapes, 1L)[[1L]] else list(type = "VALUE", value = i, success = TRUE, time = 0, tag = tag)
    before <- serialize(msg, NULL)
    got <- parallelly:::accept_message(if (runif(1) < 0.5) state, msg)
    expect_identical(serialize(msg, NULL), before)
    if (!is.null(got) && !is.list(msg)) expect_identical(got, msg)
    task <- list(type = sample(c("EXEC", "DONE", NA), 1L), data = if (runif(1) < 0.8) list(fun = eval, args = list(quote(1)), return = TRUE, tag = tag) else sample(shapes, 1L)[[1L]], tag = NULL)
    before <- serialize(task, NULL)
    sent <- parallelly:::number_task(state, task)
    expect_identical(serialize(task, NULL), before)
    expect_true(is.list(sent))
  }
  expect_null(attributes(FALSE))
  # The node still works (the numbers read above were made up; none was below the first
  # current one).
  expect_identical(parallel::clusterEvalQ(cl, 1L), list(1L))
  expect_null(parallelly:::backend_task_numbers_value(list()))
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
