## Unset every parallelly.*/future.* option and R_PARALLELLY_*/R_FUTURE_*
## env var for the calling test, so .onLoad settings do not interfere and
## options set by the test do not leak into other tests
local_clean_settings <- function(env = parent.frame()) {
  known <- vapply(parallelly:::package_option_specs(), `[[`, "name", FUN.VALUE = "")
  known <- c(paste0("parallelly.", c(known, "debug")), paste0("future.", known))
  opts <- grep("^(parallelly|future)[.]", names(options()), value = TRUE)
  opts <- unique(c(opts, known))
  if (length(opts) > 0L) {
    withr::local_options(setNames(vector("list", length(opts)), opts),
                         .local_envir = env)
  }
  vars <- grep("^R_(PARALLELLY|FUTURE)_", names(Sys.getenv()), value = TRUE)
  if (length(vars) > 0L) {
    withr::local_envvar(setNames(rep(NA, length(vars)), vars), .local_envir = env)
  }
}

test_that("getOption2() falls back between parallelly.* and future.*", {
  local_clean_settings()
  getOption2 <- parallelly:::getOption2
  expect_null(getOption2("parallelly.foo"))
  expect_identical(getOption2("parallelly.foo", 42L), 42L)

  withr::local_options(future.foo = "legacy")
  expect_identical(getOption2("parallelly.foo"), "legacy")
  withr::local_options(parallelly.foo = "new")
  expect_identical(getOption2("parallelly.foo"), "new")

  withr::local_options(parallelly.bar = TRUE)
  expect_true(getOption2("future.bar"))
  expect_identical(getOption2("other.option", "x"), "x")
})

test_that("getEnvVar2() falls back between R_PARALLELLY_* and R_FUTURE_*", {
  local_clean_settings()
  getEnvVar2 <- parallelly:::getEnvVar2
  expect_identical(getEnvVar2("R_PARALLELLY_FOO"), NA_character_)
  expect_identical(getEnvVar2("R_PARALLELLY_FOO", "dflt"), "dflt")

  withr::local_envvar(R_FUTURE_FOO = "legacy")
  expect_identical(getEnvVar2("R_PARALLELLY_FOO"), "legacy")
  withr::local_envvar(R_PARALLELLY_FOO = "new")
  expect_identical(getEnvVar2("R_PARALLELLY_FOO"), "new")

  withr::local_envvar(R_PARALLELLY_BAR = "x")
  expect_identical(getEnvVar2("R_FUTURE_BAR"), "x")
})

test_that("env var names are derived from option names", {
  expect_identical(parallelly:::option_envvar_name("availableCores.system"),
                   "R_PARALLELLY_AVAILABLECORES_SYSTEM")
  expect_identical(parallelly:::option_envvar_name("makeNodePSOCK.tries.delay"),
                   "R_PARALLELLY_MAKENODEPSOCK_TRIES_DELAY")
})

test_that("availableCores.system/fallback accept integers and NA (startup)", {
  for (name in c("SYSTEM", "FALLBACK")) {
    option <- paste0("parallelly.availableCores.", tolower(name))
    envvar <- paste0("R_PARALLELLY_AVAILABLECORES_", name)
    for (value in c("1", "NA", "NA_real_", "NA_integer_")) {
      local({
        local_clean_settings()
        withr::local_envvar(setNames(value, envvar))
        parallelly:::update_package_options()
        expected <- if (value == "1") 1L else NA_integer_
        expect_identical(getOption(option), expected)
      })
    }
  }
})

test_that("update_package_options() coerces values to the option's mode", {
  local_clean_settings()
  withr::local_envvar(
    R_PARALLELLY_AVAILABLECORES_METHODS = "system, mc.cores,Slurm",
    R_PARALLELLY_AVAILABLECORES_LOGICAL = "false",
    R_PARALLELLY_AVAILABLECORES_OMIT = "2",
    R_PARALLELLY_AVAILABLECORES_MAX = "Inf",
    R_PARALLELLY_MAXWORKERS_LOCALHOST = "1.0,3",
    R_PARALLELLY_FORK_ENABLE = "NA",
    R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT = "120",
    R_PARALLELLY_MAKENODEPSOCK_TRIES = "5",
    R_PARALLELLY_MAKENODEPSOCK_RSHOPTS = "-v,-p 22",
    R_PARALLELLY_MAKENODEPSOCK_SETUP_STRATEGY = "sequential",
    R_PARALLELLY_MAKENODEPSOCK_AUTOKILL = "TRUE"
  )
  parallelly:::update_package_options()
  expect_identical(getOption("parallelly.availableCores.methods"),
                   c("system", "mc.cores", "Slurm"))
  expect_false(getOption("parallelly.availableCores.logical"))
  expect_identical(getOption("parallelly.availableCores.omit"), 2L)
  expect_identical(getOption("parallelly.availableCores.max"), Inf)
  expect_identical(getOption("parallelly.maxWorkers.localhost"), c(1, 3))
  expect_identical(getOption("parallelly.fork.enable"), NA)
  expect_identical(getOption("parallelly.makeNodePSOCK.connectTimeout"), 120)
  expect_identical(getOption("parallelly.makeNodePSOCK.tries"), 5L)
  expect_identical(getOption("parallelly.makeNodePSOCK.rshopts"), c("-v", "-p 22"))
  expect_identical(getOption("parallelly.makeNodePSOCK.setup_strategy"), "sequential")
  expect_true(getOption("parallelly.makeNodePSOCK.autoKill"))
  expect_null(getOption("parallelly.makeNodePSOCK.timeout"))
})

test_that("update_package_options() does not override options already set", {
  local_clean_settings()
  withr::local_options(parallelly.availableCores.system = 8L)
  withr::local_envvar(R_PARALLELLY_AVAILABLECORES_SYSTEM = "2")
  parallelly:::update_package_options()
  expect_identical(getOption("parallelly.availableCores.system"), 8L)
})

test_that("update_package_options() reads legacy R_FUTURE_* env vars", {
  local_clean_settings()
  withr::local_envvar(R_FUTURE_AVAILABLECORES_FALLBACK = "3")
  parallelly:::update_package_options()
  expect_identical(getOption("parallelly.availableCores.fallback"), 3L)
})

test_that("invalid env var values give errors naming the env var", {
  bad <- list(
    R_PARALLELLY_AVAILABLECORES_SYSTEM = "two",
    R_PARALLELLY_AVAILABLECORES_MIN = "NA",
    R_PARALLELLY_AVAILABLECORES_OMIT = "1.5x",
    R_PARALLELLY_AVAILABLECORES_LOGICAL = "maybe",
    R_PARALLELLY_MAKENODEPSOCK_TIMEOUT = "soon",
    R_PARALLELLY_MAXWORKERS_LOCALHOST = "1,x"
  )
  for (envvar in names(bad)) {
    local({
      local_clean_settings()
      withr::local_envvar(setNames(bad[[envvar]], envvar))
      expect_error(parallelly:::update_package_options(), envvar, fixed = TRUE)
    })
  }
})

test_that("parallelly_debug_setup() maps R_PARALLELLY_DEBUG to parallelly.debug", {
  local_clean_settings()
  withr::local_envvar(R_PARALLELLY_DEBUG = "TRUE")
  parallelly:::parallelly_debug_setup()
  expect_true(getOption("parallelly.debug"))

  local_clean_settings()
  withr::local_envvar(R_PARALLELLY_DEBUG = "false")
  parallelly:::parallelly_debug_setup()
  expect_false(getOption("parallelly.debug"))

  local_clean_settings()
  withr::local_envvar(R_PARALLELLY_DEBUG = "verbose")
  expect_warning(parallelly:::parallelly_debug_setup(), "R_PARALLELLY_DEBUG")
  expect_null(getOption("parallelly.debug"))
})

test_that("apply_r_cmd_check_settings() sets long timeouts and check limits", {
  vars <- c("R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT",
            "R_PARALLELLY_MAKENODEPSOCK_TIMEOUT",
            "R_PARALLELLY_MAKENODEPSOCK_SESSIONINFO_PKGS",
            "R_PARALLELLY_MAKENODEPSOCK_AUTOKILL",
            "R_PARALLELLY_MAKENODEPSOCK_RSCRIPT_LABEL",
            "R_PARALLELLY_RANDOM_PORTS", "_R_CHECK_LIMIT_CORES_",
            "R_PARALLELLY_R_CMD_CHECK_NICE")
  withr::local_envvar(setNames(rep(NA, length(vars)), vars))

  expect_false(parallelly:::apply_r_cmd_check_settings(in_check = FALSE))
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_TIMEOUT"), "")

  withr::local_envvar(R_PARALLELLY_R_CMD_CHECK_NICE = "false")
  expect_false(parallelly:::apply_r_cmd_check_settings(in_check = TRUE))
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_TIMEOUT"), "")

  withr::local_envvar(R_PARALLELLY_R_CMD_CHECK_NICE = NA,
                      R_PARALLELLY_RANDOM_PORTS = "30000:30100")
  expect_true(parallelly:::apply_r_cmd_check_settings(in_check = TRUE))
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT"), "120")
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_TIMEOUT"), "120")
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_SESSIONINFO_PKGS"), "TRUE")
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_AUTOKILL"), "TRUE")
  expect_identical(Sys.getenv("R_PARALLELLY_MAKENODEPSOCK_RSCRIPT_LABEL"), "TRUE")
  expect_identical(Sys.getenv("R_PARALLELLY_RANDOM_PORTS"), "30000:30100")
  expect_identical(Sys.getenv("_R_CHECK_LIMIT_CORES_"), "TRUE")

  withr::local_envvar(R_PARALLELLY_RANDOM_PORTS = NA, "_R_CHECK_LIMIT_CORES_" = "false")
  parallelly:::apply_r_cmd_check_settings(in_check = TRUE)
  expect_identical(Sys.getenv("R_PARALLELLY_RANDOM_PORTS"), "20000:39999")
  expect_identical(Sys.getenv("_R_CHECK_LIMIT_CORES_"), "false")
})

test_that("R CMD check settings reach the options", {
  local_clean_settings()
  vars <- c(paste0("R_PARALLELLY_MAKENODEPSOCK_",
                   c("CONNECTTIMEOUT", "TIMEOUT", "SESSIONINFO_PKGS",
                     "AUTOKILL", "RSCRIPT_LABEL")),
            "R_PARALLELLY_RANDOM_PORTS", "_R_CHECK_LIMIT_CORES_")
  withr::local_envvar(setNames(rep(NA, length(vars)), vars))
  parallelly:::apply_r_cmd_check_settings(in_check = TRUE)
  parallelly:::update_package_options()
  expect_identical(getOption("parallelly.makeNodePSOCK.connectTimeout"), 120)
  expect_true(getOption("parallelly.makeNodePSOCK.sessionInfo.pkgs"))
  expect_identical(getOption("parallelly.makeNodePSOCK.rscript_label"), "TRUE")
})
