# The clients users reach for, on our multisession workers and on a RichSOCKcluster with a
# remote worker: future.apply, furrr, foreach + doParallel/doRNG, progressr, parallelMap and
# future.batchtools (local backend). Each result is checked, and where a client promises
# reproducible random numbers, two runs with the same seed must agree.

for (pkg in c("future", "future.apply", "furrr", "foreach", "doParallel", "doRNG", "progressr"))
  skip_if_not_installed(pkg)

# Calls every future-based client under the current plan; `pids` are the workers' PIDs.
check_future_clients <- function(pids) {
  here <- Sys.getpid()
  # future.apply
  expect_identical(future.apply::future_sapply(1:10, function(x) x * 2L), (1:10) * 2L)
  ran_on <- unlist(future.apply::future_lapply(1:4, function(i) Sys.getpid()))
  expect_true(all(ran_on %in% pids))
  r1 <- future.apply::future_sapply(1:5, function(i) runif(1), future.seed = 42L)
  r2 <- future.apply::future_sapply(1:5, function(i) runif(1), future.seed = 42L)
  expect_identical(r1, r2)
  expect_length(unique(r1), 5L)

  # furrr
  expect_identical(furrr::future_map_chr(letters[1:4], toupper), LETTERS[1:4])
  opts <- furrr::furrr_options(seed = 7L)
  expect_identical(furrr::future_map_dbl(1:4, ~ runif(1), .options = opts),
                   furrr::future_map_dbl(1:4, ~ runif(1), .options = opts))

  expect_progress_relayed()
  expect_immediate_conditions_relayed(pids)
}

# foreach with doParallel and doRNG on a cluster of ours.
check_foreach_clients <- function(cl) {
  doParallel::registerDoParallel(cl)
  on.exit(foreach::registerDoSEQ(), add = TRUE)
  `%dopar%` <- foreach::`%dopar%`
  `%dorng%` <- doRNG::`%dorng%`
  res <- foreach::foreach(i = 1:6, .combine = c) %dopar% (i^2)
  expect_identical(res, (1:6)^2)
  pids <- foreach::foreach(i = 1:4, .combine = c) %dopar% Sys.getpid()
  expect_true(all(pids %in% cluster_pids(cl)))
  set.seed(123)
  a <- foreach::foreach(i = 1:4, .combine = c) %dorng% runif(1)
  set.seed(123)
  b <- foreach::foreach(i = 1:4, .combine = c) %dorng% runif(1)
  expect_identical(as.numeric(a), as.numeric(b))
  expect_length(unique(as.numeric(a)), 4L)
}

test_that("clients work on plan(multisession)", {
  oplan <- future::plan(future::multisession, workers = 2)
  on.exit(future::plan(oplan), add = TRUE)
  withr::defer(parallelly:::stop_all_children())
  pids <- unlist(future::value(lapply(1:2, function(i) future::future(Sys.getpid()))))
  check_future_clients(pids)
  cl <- local_cluster(2)
  check_foreach_clients(cl)
})

test_that("clients work on a RichSOCKcluster with a remote worker", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(c("localhost", "testhost1"))
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  check_future_clients(cluster_pids(cl))
  check_foreach_clients(cl)
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
})

test_that("parallelMap in socket mode runs on a cluster of ours set as parallel's default", {
  skip_if_not_installed("parallelMap")
  cl <- local_cluster(2)
  parallelMap::parallelStartSocket(cpus = 1L, show.info = FALSE, logging = FALSE)
  parallel::stopCluster(parallel::getDefaultCluster())  # parallelMap's own base cluster
  parallel::setDefaultCluster(cl)
  res <- parallelMap::parallelMap(function(x) c(x^2, Sys.getpid()), 1:6, simplify = FALSE)
  expect_identical(vapply(res, `[`, 0, 1), as.numeric((1:6)^2))
  expect_true(all(vapply(res, `[`, 0, 2) %in% cluster_pids(cl)))
  pids <- cluster_pids(cl)
  parallelMap::parallelStop()
  expect_true(wait_for(function() !any(vapply(pids, process_running, NA)), timeout = 10))
})

test_that("future.batchtools' local backend runs futures that use our workers", {
  skip_if_not_installed("future.batchtools")
  withr::local_dir(withr::local_tempdir())
  oplan <- future::plan(list(future.batchtools::batchtools_local, future::tweak(future::multisession, workers = 2)))
  on.exit(future::plan(oplan), add = TRUE)
  withr::defer(parallelly:::stop_all_children())
  f <- future::future({
    inner <- lapply(1:2, function(i) future::future(Sys.getpid()))
    list(version = format(packageVersion("parallelly")), pids = unlist(future::value(inner)))
  })
  v <- future::value(f)
  expect_identical(v$version, "2.0.0")
  expect_length(v$pids, 2L)
  expect_false(Sys.getpid() %in% v$pids)
  expect_identical(unlist(future.apply::future_lapply(1:3, function(i) i * 3L)), c(3L, 6L, 9L))
})
