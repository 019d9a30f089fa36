test_that("hpaste() abbreviates long vectors", {
  hpaste <- parallelly:::hpaste
  x <- 1:6
  expect_identical(hpaste(x), "1, 2, 3, ..., 6")
  expect_identical(hpaste(x, maxHead = 2), "1, 2, ..., 6")
  expect_identical(hpaste(x, maxHead = 4), "1, 2, 3, 4, 5, 6")
  expect_identical(hpaste(x, maxHead = Inf), "1, 2, 3, 4, 5, 6")
  expect_identical(hpaste(x, lastCollapse = " and "), "1, 2, 3, 4, 5 and 6")
  expect_identical(hpaste(x, maxHead = 2, maxTail = 2), "1, 2, ..., 5, 6")
  expect_identical(hpaste(1:2), "1, 2")
  expect_identical(hpaste("a"), "a")
  expect_identical(hpaste(character(0)), "")
  expect_identical(hpaste(x, collapse = NULL), as.character(x))
  expect_identical(hpaste("x", 1:2, sep = "-"), "x-1, x-2")
  expect_identical(hpaste(1:10, abbreviate = "[...]"), "1, 2, 3, [...], 10")
})

test_that("mdebug() and mdebugf() print timestamped messages only when debugging", {
  withr::local_options(parallelly.debug = FALSE)
  expect_silent(parallelly:::mdebug("hello"))
  expect_silent(parallelly:::mdebugf("hello %d", 1L))
  expect_false(parallelly:::mdebug("hello"))

  withr::local_options(parallelly.debug = TRUE)
  stamp <- "^\\[[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}\\] "
  expect_message(parallelly:::mdebug("hello ", "world"), paste0(stamp, "hello world"))
  expect_message(parallelly:::mdebugf("n=%d", 42L), paste0(stamp, "n=42"))
  expect_silent(parallelly:::mdebug("quiet", debug = FALSE))
})

test_that("options(future.debug = TRUE) turns our debug output on when parallelly.debug is unset", {
  withr::local_options(parallelly.debug = NULL, future.debug = TRUE)
  expect_message(parallelly:::mdebug("from future.debug"), "from future.debug")
  expect_message(parallelly:::mdebugf("n=%d", 1L), "n=1")
  expect_true(formals(makeClusterPSOCK)$verbose |> eval(envir = asNamespace("parallelly")))
  # parallelly.debug, when set, wins either way.
  withr::local_options(parallelly.debug = FALSE)
  expect_silent(parallelly:::mdebug("quiet"))
  withr::local_options(parallelly.debug = TRUE, future.debug = FALSE)
  expect_message(parallelly:::mdebug("loud"), "loud")
  withr::local_options(parallelly.debug = NULL, future.debug = NULL)
  expect_silent(parallelly:::mdebug("quiet"))
})

test_that("isFALSE() and isNA() accept only single values", {
  isFALSE <- parallelly:::is_false_like
  isNA <- parallelly:::isNA
  expect_true(isFALSE(FALSE))
  expect_true(isFALSE("FALSE"))
  expect_true(isFALSE(c(a = FALSE)))
  expect_false(isFALSE(TRUE))
  expect_false(isFALSE(NA))
  expect_false(isFALSE(c(FALSE, FALSE)))
  expect_false(isFALSE(NULL))
  expect_false(isFALSE("abc"))

  expect_true(isNA(NA))
  expect_true(isNA(NA_integer_))
  expect_false(isNA(c(NA, NA)))
  expect_false(isNA(1))
  expect_false(isNA(NULL))
})

test_that("shQuote() supports sh, cmd, none and the platform default", {
  shQuote <- parallelly:::sh_quote
  expect_identical(shQuote("a b", type = "sh"), "'a b'")
  expect_identical(shQuote("a b", type = "cmd"), "\"a b\"")
  expect_identical(shQuote("a b", type = "none"), "a b")
  default <- if (.Platform$OS.type == "windows") "\"a b\"" else "'a b'"
  expect_identical(shQuote("a b", type = NULL), default)
  expect_identical(shQuote("a b"), default)
  expect_identical(shQuote(c("a", "b c"), type = "none"), c("a", "b c"))
  expect_identical(shQuote(character(0)), character(0))
})

test_that("stop_if_not() names the failing condition", {
  expect_true(parallelly:::stop_if_not(TRUE, 1 == 1))
  expect_error(parallelly:::stop_if_not(TRUE, 1 > 2), "1 > 2 is not TRUE")
  expect_error(parallelly:::stop_if_not(NA), "is not TRUE")
})

test_that("comma() and commaq() join values", {
  expect_identical(parallelly:::comma(1:3), "1, 2, 3")
  expect_identical(parallelly:::commaq(c("a", "b")), "'a', 'b'")
})

test_that("inRCmdCheck() detects R CMD check from _R_CHECK_PACKAGE_NAME_", {
  withr::local_envvar("_R_CHECK_PACKAGE_NAME_" = "parallelly")
  expect_true(parallelly:::inRCmdCheck())
  withr::local_envvar("_R_CHECK_PACKAGE_NAME_" = NA)
  res <- parallelly:::inRCmdCheck()
  expect_true(is.logical(res) && length(res) == 1L && !is.na(res))
})

test_that("internal assertions and host checks raise classed errors", {
  expect_error(parallelly:::stop_if_not(1 > 2), class = "parallellyAssertionError")
  expect_error(parallelly:::is_localhost(NA_character_), "'worker'", class = "parallellyArgumentError")
  # Our helpers no longer mask base or parallel functions of the same name.
  ns <- asNamespace("parallelly")
  for (name in c("isFALSE", "shQuote", "detectCores")) expect_false(exists(name, envir = ns, inherits = FALSE), info = name)
})
