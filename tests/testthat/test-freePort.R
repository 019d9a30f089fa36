## Occupy a port for the calling test; NULL if none could be taken
local_busy_port <- function(env = parent.frame()) {
  for (port in sample(40000:49999, size = 20L)) {
    con <- tryCatch(serverSocket(port), error = function(ex) NULL)
    if (!is.null(con)) {
      withr::defer(close(con), envir = env)
      return(port)
    }
  }
  NULL
}

test_that("freePort() gives a port in range and leaves .Random.seed alone", {
  withr::local_envvar(R_PARALLELLY_RANDOM_PORTS = NA, R_PARALLEL_PORT = NA,
                      "_R_PARALLELLY_CHECK_AVAILABLE_PORTS_" = NA)
  set.seed(42)
  seed <- .Random.seed
  port <- freePort()
  expect_type(port, "integer")
  expect_length(port, 1L)
  expect_true(port >= 1024L && port <= 65535L)
  expect_identical(.Random.seed, seed)

  port <- freePort("random")
  expect_true(port >= 11000L && port <= 11999L)
  expect_identical(.Random.seed, seed)

  ## No seed is created if there was none
  genv <- globalenv()
  rm(".Random.seed", envir = genv)
  on.exit(assign(".Random.seed", seed, envir = genv))
  freePort(20000:20100)
  expect_false(exists(".Random.seed", envir = genv, inherits = FALSE))
})

test_that("freePort() picks different ports over calls", {
  ports <- vapply(1:10, function(i) freePort(30000:39999), 0L)
  expect_gt(length(unique(ports)), 1L)
})

test_that("freePort('auto') uses R_PARALLEL_PORT", {
  withr::local_envvar(R_PARALLEL_PORT = "8888")
  expect_identical(freePort("auto"), 8888L)
  withr::local_envvar(R_PARALLEL_PORT = NA, R_PARALLELLY_RANDOM_PORTS = "31000:31009")
  expect_true(freePort("auto") %in% 31000:31009)
  withr::local_envvar(R_PARALLEL_PORT = "abc")
  expect_warning(port <- freePort("auto"), "R_PARALLEL_PORT")
  expect_true(port %in% 31000:31009)
})

test_that("R_PARALLELLY_RANDOM_PORTS takes several specifications", {
  withr::local_envvar(R_PARALLELLY_RANDOM_PORTS = "31000:31002, 31010,31020:31020")
  expect_identical(parallelly:::random_ports(), c(31000:31002, 31010L, 31020L))
  for (i in 1:5) expect_true(freePort("random") %in% c(31000:31002, 31010L, 31020L))
  for (bad in c("abc", "10:5", "1:2:3", "70000", "-1", ",")) {
    withr::local_envvar(R_PARALLELLY_RANDOM_PORTS = bad)
    expect_error(freePort("random"), "R_PARALLELLY_RANDOM_PORTS", info = bad)
  }
})

test_that("a port in use is skipped, else 'default' decides", {
  withr::local_envvar("_R_PARALLELLY_CHECK_AVAILABLE_PORTS_" = NA)
  busy <- local_busy_port()
  skip_if(is.null(busy))
  expect_false(parallelly:::backend_port_is_free(busy))
  expect_identical(freePort(busy, default = NA), NA_integer_)
  expect_identical(freePort(busy, default = "first"), busy)
  expect_identical(freePort(busy, default = "random"), busy)
  expect_identical(freePort(busy, default = 1234L), 1234L)
  port <- freePort(c(busy, busy + 1L), randomize = FALSE)
  if (parallelly:::backend_port_is_free(busy + 1L)) expect_identical(port, busy + 1L)
})

test_that("_R_PARALLELLY_CHECK_AVAILABLE_PORTS_=any takes the first port", {
  withr::local_envvar("_R_PARALLELLY_CHECK_AVAILABLE_PORTS_" = "any")
  expect_identical(freePort(c(5L, 6L, 7L), randomize = FALSE), 5L)
})

test_that("freePort() validates its arguments", {
  expect_identical(freePort(integer(0)), NA_integer_)
  expect_error(freePort(-1L), "ports")
  expect_error(freePort(70000L), "ports")
  expect_error(freePort(NA_integer_), "ports")
  expect_error(freePort(1.5), "ports")
  expect_error(freePort("sometimes"))
  withr::local_envvar("_R_PARALLELLY_CHECK_AVAILABLE_PORTS_" = NA)
  busy <- local_busy_port()
  skip_if(is.null(busy))
  expect_error(freePort(busy, default = "never"), "default")
})
