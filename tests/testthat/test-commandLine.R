# Rscript -e parallelly::availableCores --omit=1, and the other command-line functions:
# a fresh Rscript runs them, and what it writes is what the function returns here.

cli_env <- c(R_PARALLELLY_AVAILABLECORES_METHODS = "system",
             R_PARALLELLY_AVAILABLECORES_SYSTEM = "6")

cli_expected <- function(value) capture.output(parallelly:::write_cli_value(value))

test_that("Rscript -e parallelly::availableCores --omit=1 writes availableCores(omit = 1)", {
  local_clean_scheduler_env(character(0))
  withr::local_options(parallelly.availableCores.methods = "system", parallelly.availableCores.system = 6L)
  out <- rscript_output(c("-e", "parallelly::availableCores", "--omit=1"), env = cli_env)
  expect_identical(attr(out, "status"), 0L)
  expect_identical(as.character(out), cli_expected(availableCores(omit = 1)))
  expect_identical(as.character(out), c(" system", "      5"))

  out <- rscript_output(c("-e", "parallelly::availableCores", "--fraction=0.5", "--max=2"), env = cli_env)
  expect_identical(as.character(out), cli_expected(availableCores(fraction = 0.5, max = 2)))

  out <- rscript_output(c("-e", "parallelly::availableCores", "--methods=system,mc.cores", "--which=all"),
                        env = c(cli_env, MC_CORES = "3"))
  withr::local_options(mc.cores = 3L)
  expected <- availableCores(methods = c("system", "mc.cores"), which = "all")
  expect_identical(as.character(out), cli_expected(expected))
  expect_identical(out[1], " system mc.cores")
})

test_that("availableWorkers, cpuLoad and freePort work from the command line too", {
  local_clean_scheduler_env(character(0))
  withr::local_envvar(LSB_HOSTS = "n1 n1 n2")
  out <- rscript_output(c("-e", "parallelly::availableWorkers", "--methods=LSF,system"), env = cli_env)
  expect_identical(as.character(out), "n1 n1 n2")
  expect_identical(as.character(out), cli_expected(availableWorkers(methods = c("LSF", "system"))))

  out <- rscript_output(c("-e", "parallelly::cpuLoad"))
  expect_identical(attr(out, "status"), 0L)
  expect_length(out, 2L)
  expect_identical(strsplit(trimws(out[1]), " +")[[1]], c("1min", "5min", "15min"))
  expect_true(all(as.numeric(strsplit(trimws(out[2]), " +")[[1]]) >= 0))

  out <- rscript_output(c("-e", "parallelly::freePort", "--ports=20000:20999", "--randomize=FALSE"))
  port <- as.integer(out)
  expect_length(port, 1L)
  expect_true(port >= 20000L && port <= 20999L)
  expect_identical(port, freePort(20000:20999, randomize = FALSE))
})

test_that("a bad command-line argument is an error naming it, with exit status 1", {
  out <- rscript_output(c("-e", "parallelly::availableCores", "--foo=1"))
  expect_identical(attr(out, "status"), 1L)
  expect_length(out, 0L)
  expect_match(paste(attr(out, "stderr"), collapse = " "), "Unknown parallelly command-line arguments for availableCores\\(\\): --foo=1")
  out <- rscript_output(c("-e", "parallelly::availableCores", "--omit=many"))
  expect_identical(attr(out, "status"), 1L)
  expect_match(paste(attr(out, "stderr"), collapse = " "), "--omit=many", fixed = TRUE)
  out <- rscript_output(c("-e", "parallelly::availableCores", "--omit=-1"))
  expect_identical(attr(out, "status"), 1L)
  expect_match(paste(attr(out, "stderr"), collapse = " "), "omit")
})

test_that("printing these functions anywhere else shows them, and calls nothing", {
  expect_output(print(availableCores), "^function \\(constraints = NULL")
  expect_output(print(freePort), "^function \\(ports = ")
  out <- rscript_output(c("-e", "print(parallelly::availableCores); x <- parallelly::cpuLoad; x"))
  expect_identical(attr(out, "status"), 0L)
  expect_match(out[1], "^function \\(constraints = NULL")
  expect_true(any(grepl("^function \\(\\)", out)))
  # still functions, with the reference's formals
  expect_true(is.function(availableCores))
  expect_identical(names(formals(availableCores)),
                   c("constraints", "methods", "na.rm", "logical", "default", "which", "fraction", "omit", "max"))
})
