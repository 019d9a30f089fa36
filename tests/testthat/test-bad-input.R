# Bad input gets a classed R error (or the reference's documented NA/warning), quickly,
# and leaves nothing running.

expect_no_new_children <- function(expr) {
  before <- parallelly:::backend_running_children()
  force(expr)
  expect_identical(setdiff(parallelly:::backend_running_children(), before), integer(0))
}

test_that("invalid 'workers' are refused, naming the argument", {
  for (workers in list(0, -1, NA_real_, 1:2, NA_character_, character(0), "", 2.5, Inf, list(1))) {
    err <- expect_error(makeClusterPSOCK(workers), class = "parallellyArgumentError")
    expect_match(conditionMessage(err), "'workers'")
  }
})

test_that("ports out of range or unusable are refused", {
  expect_error(makeClusterPSOCK(1, port = 70000L), "'port", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, port = 0L), "'port'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, port = integer(0)), "'port'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, port = NA_integer_), "'port'")
  expect_error(makeNodePSOCK(port = NA_integer_, action = "options"), "'port'", class = "parallellyArgumentError")
  expect_error(makeNodePSOCK(port = -1L, action = "options"), "'port'", class = "parallellyArgumentError")
})

test_that("a port in use gives a clear error and starts no worker", {
  port <- freePort("random")
  server <- serverSocket(port)
  on.exit(close(server))
  expect_no_new_children({
    err <- expect_error(makeClusterPSOCK(1, port = port), class = "parallellyPortError")
    expect_match(conditionMessage(err), sprintf("port %d", port))
    expect_match(conditionMessage(err), "'port'")
  })
})

test_that("a missing rscript fails within seconds, naming it", {
  t0 <- Sys.time()
  expect_no_new_children({
    err <- expect_error(makeClusterPSOCK(1, rscript = "/no/such/Rscript"),
                        class = "parallellyLaunchError")
    expect_match(conditionMessage(err), "/no/such/Rscript", fixed = TRUE)
    expect_match(conditionMessage(err), "'rscript'", fixed = TRUE)
  })
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 10)
  expect_error(makeClusterPSOCK(1, rscript = "/no/such/Rscript", setup_strategy = "sequential", tries = 1L),
               class = "PSOCKConnectionError")
})

test_that("a worker that exits before connecting fails the setup at once, with its output", {
  t0 <- Sys.time()
  expect_no_new_children({
    err <- expect_error(makeClusterPSOCK(1, rscript_startup = "cat('boom on startup\\n'); quit(status = 3)",
                                         outfile = NULL, connectTimeout = 60),
                        class = "parallellyLaunchError")
  })
  expect_s3_class(err, "PSOCKConnectionError")
  expect_match(conditionMessage(err), "exited with status 3")
  expect_identical(err$exit, "exited with status 3")
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 30)
})

test_that("a worker that never connects fails after connectTimeout, and is stopped", {
  t0 <- Sys.time()
  expect_no_new_children({
    err <- expect_error(makeClusterPSOCK(2, rscript_startup = quote(Sys.sleep(60)), connectTimeout = 1),
                        class = "parallellyTimeoutError")
  })
  expect_s3_class(err, "PSOCKConnectionError")
  expect_match(conditionMessage(err), "^Cluster setup failed \\(connectTimeout=1.0 seconds\\). 2 of 2 workers failed to connect")
  expect_true(all(!vapply(err$pid, process_running, logical(1))))
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 30)
  expect_error(makeClusterPSOCK(1, rscript_startup = quote(Sys.sleep(60)), connectTimeout = 0.5,
                                setup_strategy = "sequential", tries = 1L),
               "within 0.5 seconds", class = "parallellyTimeoutError")
})

test_that("invalid default_packages are refused before anything starts", {
  expect_no_new_children(
    expect_error(makeClusterPSOCK(1, default_packages = c("utils", "not a package")),
                 "default_packages", class = "parallellyArgumentError")
  )
})

test_that("other bad launch options are refused, naming the argument", {
  expect_error(makeClusterPSOCK(1, connectTimeout = -1), "'connectTimeout'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, timeout = Inf), "'timeout'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, setup_strategy = "bogus"), "'setup_strategy'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, rscript_args = c("*", "*")), "'rscript_args'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, rscript_startup = "1 +"), "'rscript_startup'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, useXDR = NA), "'useXDR'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(1, tries = 0), "'tries'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK("bad host"), "'worker'", class = "parallellyArgumentError")
  expect_error(makeClusterPSOCK(c("localhost", "localhost"), user = c("a", "b", "c")), "'user'",
               class = "parallellyArgumentError")
  expect_error(makeNodePSOCK(action = "options"), "'port'", class = "parallellyArgumentError")
})

test_that("signals out of range are refused", {
  cl <- local_cluster(1)
  for (signal in list(0, 65, -9, NA_integer_, 1:2, "TERM", 2.5)) {
    expect_error(killNode(cl[[1]], signal = signal), "'signal'", class = "parallellyArgumentError")
  }
  expect_true(isNodeAlive(cl[[1]]))
})

test_that("killNode(), isNodeAlive() and cloneNode() on things that are not nodes", {
  expect_warning(res <- killNode(42), "killNode\\(\\) is not supported for this 'numeric'")
  expect_identical(res, NA)
  expect_identical(isNodeAlive(42), NA)
  expect_identical(isNodeAlive("a"), NA)
  expect_error(cloneNode(42), "Do not know how to clone node of class 'numeric'", class = "parallellyError")
  expect_error(cloneNode(list()), "Do not know how to clone node of class 'list'")
  cl <- local_cluster(1)
  expect_error(isNodeAlive(cl[[1]], timeout = -1), "'timeout'", class = "parallellyArgumentError")
  expect_error(killNode(cl[[1]], timeout = NA), "'timeout'", class = "parallellyArgumentError")
  expect_true(isNodeAlive(cl[[1]]))
})

test_that("the localhost overuse guard warns above 100% and fails above 300%, I(n) bypasses", {
  withr::local_options(parallelly.availableCores.fallback = NULL, mc.cores = NULL)
  withr::local_envvar(R_PARALLELLY_AVAILABLECORES_SYSTEM = NA)
  ncores <- availableCores()
  expect_error(makeClusterPSOCK(3L * ncores + 1L, dryrun = TRUE, quiet = TRUE),
               "hard limit", class = "parallellyArgumentError")
  expect_warning(makeClusterPSOCK(ncores + 1L, dryrun = TRUE, quiet = TRUE), "soft limit")
  expect_silent(makeClusterPSOCK(I(3L * ncores + 1L), dryrun = TRUE, quiet = TRUE))
})

test_that("the overuse guard of no more workers than cores runs as they start: its error stops them, its warning keeps them", {
  # (It waits for availableCores() while the workers start up, not before: see
  # makeClusterPSOCK().) One core available by option mc.cores.
  withr::local_options(mc.cores = 1L, parallelly.availableCores.fallback = NULL)
  withr::local_envvar(R_PARALLELLY_AVAILABLECORES_SYSTEM = NA)
  expect_identical(unname(availableCores()), 1L)
  before <- parallelly:::backend_running_children()
  withr::with_options(list(parallelly.maxWorkers.localhost = c(0.2, 0.5)), {
    expect_error(makeClusterPSOCK(1L), "hard limit", class = "parallellyArgumentError")
  })
  expect_true(wait_for(function() length(setdiff(parallelly:::backend_running_children(), before)) == 0L, timeout = 10))
  skip_if(parallelly:::backend_usable_cores() < 2L, "one usable core: 2 workers are checked before they start")
  expect_warning(cl <- makeClusterPSOCK(2L), "soft limit")
  withr::defer(parallel::stopCluster(cl))
  expect_identical(parallel::clusterEvalQ(cl, 1L), list(1L, 1L))
})

test_that("the connection budget is checked before anything starts", {
  withr::local_options(parallelly.availableConnections = 16L)
  # An option set after the first call is not seen if the value was memoised; check the message.
  free <- freeConnections()
  if (free >= 100L) skip("availableConnections() is memoised at a large value in this session")
  expect_error(makeClusterPSOCK(I(free + 1L), dryrun = TRUE, quiet = TRUE), "Cannot create")
})

test_that("arguments of the wrong type are refused even where this launch would not use them", {
  # Local workers use no rshcmd, rshopts, user or rshlogfile, but a wrong one is still a mistake.
  bad <- list(rshcmd = character(0), rshcmd = NA_character_, rshcmd = 1, rshcmd = function(x) x,
              rshopts = NA, rshopts = 1L, user = 1, user = c("a", "b"), rshlogfile = 2,
              rscript_libs = NA, socketOptions = 1, methods = NA, calls = "yes")
  for (i in seq_along(bad)) {
    name <- names(bad)[i]
    args <- c(list(1), bad[i])
    expect_no_new_children({
      err <- expect_error(do.call(makeClusterPSOCK, args), class = "parallellyArgumentError")
    })
    expect_match(conditionMessage(err), sprintf("'%s'", name), fixed = TRUE, info = name)
  }
})

test_that("revtunnel = NA means a reverse tunnel only for SSH launchers", {
  opts <- function(...) makeNodePSOCK("n1.example.org", port = 11562L, action = "options", ...)
  expect_true(opts()$revtunnel)                       # the built-in client
  expect_true(opts(rshcmd = "ssh")$revtunnel)
  expect_true(opts(rshcmd = c("/usr/bin/ssh", "-v"))$revtunnel)
  expect_false(opts(rshcmd = "srun")$revtunnel)
  expect_false(opts(rshcmd = function(rshopts, worker) "srun -w n1")$revtunnel)
  expect_false(makeNodePSOCK(port = 11562L, action = "options")$revtunnel)
  expect_true(opts(rshcmd = "srun", revtunnel = TRUE)$revtunnel)
})
