test_that("cpuLoad() gives three named load averages", {
  load <- cpuLoad()
  expect_type(load, "double")
  expect_named(load, c("1min", "5min", "15min"))
  expect_true(all(is.na(load) | load >= 0))
  if (file.exists("/proc/loadavg")) expect_false(anyNA(load))
})

test_that("freeCores() gives a single integer >= 1", {
  free <- freeCores()
  expect_type(free, "integer")
  expect_length(free, 1L)
  expect_gte(free, 1L)
  if (!is.null(attr(free, "loadavg"))) {
    expect_identical(attr(free, "memory"), "5min")
    expect_identical(attr(free, "fraction"), 0.90)
    expect_gte(attr(free, "maxCores"), free)
  }
})

test_that("freeCores() uses the load average of the chosen period", {
  skip_if(anyNA(cpuLoad()))
  withr::local_options(parallelly.availableCores.system = 64L,
                       parallelly.availableCores.fallback = NULL)
  free <- freeCores(memory = "1min", fraction = 0.5)
  load <- attr(free, "loadavg")[["1min"]]
  expect_identical(attr(free, "maxCores"), c(system = 64L))
  expect_identical(as.integer(free), max(1L, as.integer(floor(0.5 * (64 - load)))))
})

test_that("freeCores() is 1 on a single-core machine and validates arguments", {
  withr::local_options(parallelly.availableCores.system = 1L,
                       parallelly.availableCores.fallback = NULL)
  expect_identical(freeCores(), 1L)
  expect_error(freeCores(fraction = 2), "fraction")
  expect_error(freeCores(memory = "2min"))
})
