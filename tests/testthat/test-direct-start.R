# Local workers of this R start its binary directly, without Rscript and R's front-end shell
# script (R/directLaunch.R): they must be the R sessions those front ends would have started.

# What a worker knows of itself, without what differs from one process to the next (its
# token, temporary directory and port) and the library path (compared separately).
worker_view <- function() {
  env <- Sys.getenv()
  env <- env[setdiff(names(env), c("R_PARALLELLY_WORKER_TOKEN", "R_SESSION_TMPDIR", "LD_LIBRARY_PATH"))]
  list(env = as.list(env), libs = .libPaths(), search = search(), loaded = sort(loadedNamespaces()),
       default_packages = getOption("defaultPackages"), args = sub("^PORT=[0-9]+$", "PORT=", commandArgs()),
       home = R.home(), wd = getwd(), locale = Sys.getlocale(), interactive = interactive(),
       ld = Sys.getenv("LD_LIBRARY_PATH"), binary = Sys.readlink(sprintf("/proc/%d/exe", Sys.getpid())))
}
environment(worker_view) <- baseenv()

test_that("a local worker of this R is its binary started directly: the session Rscript would have started", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  expect_true(parallelly:::internal_ok("direct_start"))
  # Start-up code with spaces and a newline: commandArgs() shows it as the front end's
  # escapes (~+~, ~n~) either way.
  startup <- "y <- 1\nz <- 2"
  direct <- parallel::clusterCall(local_cluster(1, rscript_startup = startup), worker_view)[[1]]
  front <- local({
    withr::local_options(parallelly.internals.disable = "direct_start")
    parallel::clusterCall(local_cluster(1, rscript_startup = startup), worker_view)[[1]]
  })
  expect_true(any(grepl("~+~", direct$args, fixed = TRUE)))
  for (field in setdiff(names(direct), "ld")) expect_identical(direct[[field]], front[[field]], label = field)
  expect_identical(normalizePath(direct$binary), normalizePath(file.path(R.home("bin"), "exec", "R")))
  # Which way each one came: the front-end script puts R's library directories in front of
  # the master's library path again; the direct start leaves the master's as it is.
  master_ld <- Sys.getenv("LD_LIBRARY_PATH")
  expect_identical(direct$ld, master_ld)
  expect_true(endsWith(front$ld, paste0(":", master_ld)))
})

test_that("start-up code with spaces, quotes and glob characters reaches the worker as it is", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  code <- "options(direct.test = c('a * b', \"[x] ?\", '~ $HOME `x` \\\\n'))"
  cl <- local_cluster(1, rscript_startup = code)
  expect_identical(parallel::clusterEvalQ(cl, getOption("direct.test"))[[1]],
                   c("a * b", "[x] ?", "~ $HOME `x` \\n"))
  expect_identical(parallel::clusterEvalQ(cl, Sys.getenv("LD_LIBRARY_PATH"))[[1]], Sys.getenv("LD_LIBRARY_PATH"))
})

test_that("R options the front ends act on keep the front ends", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  # The script acts on --no-init-file (it exports R_PROFILE_USER): it runs, and puts R's
  # library directories in front of the library path again.
  cl <- local_cluster(1, rscript_args = "--no-init-file")
  got <- parallel::clusterEvalQ(cl, list(profile = Sys.getenv("R_PROFILE_USER", unset = NA), ld = Sys.getenv("LD_LIBRARY_PATH")))[[1]]
  expect_identical(got$profile, "")
  expect_true(endsWith(got$ld, paste0(":", Sys.getenv("LD_LIBRARY_PATH"))))
  # Options passed on untouched still start directly.
  cl2 <- local_cluster(1, rscript_args = c("--max-connections=200", "--no-readline"))
  expect_identical(parallel::clusterEvalQ(cl2, Sys.getenv("LD_LIBRARY_PATH"))[[1]], Sys.getenv("LD_LIBRARY_PATH"))
})

test_that("Rscript's arguments become the binary's, or none when a front end must act", {
  as_r <- parallelly:::rscript_as_r_args
  got <- as_r(c("--default-packages=datasets,utils", "-e", "x <- 1", "--max-connections=256", "-e", "y()"))
  expect_identical(got$args, c("-e", "x~+~<-~+~1", "--max-connections=256", "-e", "y()"))
  expect_identical(as_r(c("-e", "a\nb c"))$args, c("-e", "a~n~b~+~c"))
  expect_identical(got$env, c(R_DEFAULT_PACKAGES = "datasets,utils"))
  expect_identical(as_r(character(0))$args, character(0))
  for (args in list("script.R", "--verbose", "--vanilla", "--no-environ", c("--arch", "x"), "-e", c("-e", ""),
                    c("-e", "-x"), "--args", "--debugger=gdb")) {
    expect_null(as_r(args), label = paste(args, collapse = " "))
  }
})

test_that("a session not started by R's front end starts its workers through Rscript", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  # R_SHARE_DIR is one of the variables only the front-end script sets.
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(paste(
    "Sys.unsetenv('R_SHARE_DIR'); library(parallelly);",
    "r <- parallelly:::r_internals(); cat(r$ok[r$name == 'direct_start'], r$why[r$name == 'direct_start'], '\\n');",
    "cl <- makeClusterPSOCK(1); cat(parallel::clusterEvalQ(cl, Sys.getenv('LD_LIBRARY_PATH'))[[1]] != Sys.getenv('LD_LIBRARY_PATH'), '\\n');",
    "parallel::stopCluster(cl)"))), stdout = TRUE, stderr = TRUE, env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_match(out[1], "^FALSE R_SHARE_DIR not set")
  expect_identical(trimws(out[2]), "TRUE")
})
