## Env vars (helper-schedulers.R) and options that availableCores() reads are unset for a
## test so that results do not depend on the machine or the scheduler running the tests

local_clean_cores <- function(system = 8L, env = parent.frame()) {
  names <- c("methods", "fallback", "min", "system", "logical", "omit", "max", "custom",
             "fraction", "methods.excludes")
  local_clean_scheduler_env(c(paste0("parallelly.availableCores.", names),
                              paste0("future.availableCores.", names),
                              "mc.cores", "parallelly.fork.enable", "future.fork.enable"),
                            system = system, env = env)
}

test_that("availableCores() gives a named integer >= 1", {
  n <- availableCores()
  expect_type(n, "integer")
  expect_length(n, 1L)
  expect_gte(n, 1L)
  expect_false(is.null(names(n)))

  all <- availableCores(which = "all")
  expect_type(all, "integer")
  expect_true(all(all >= 1L))
  expect_true("system" %in% names(all))
  expect_identical(availableCores(which = "min"), all[which.min(all)])
  expect_identical(availableCores(which = "max"), all[which.max(all)])
})

test_that("detectCores() honours option parallelly.availableCores.system", {
  local_clean_cores(system = NULL)
  n <- parallelly:::detect_cores()
  expect_type(n, "integer")
  expect_gte(n, 1L)
  withr::local_options(parallelly.availableCores.system = 2L)
  expect_identical(parallelly:::detect_cores(), 2L)
  expect_identical(availableCores(methods = "system"), c(system = 2L))
  withr::local_options(parallelly.availableCores.system = NA_integer_)
  expect_identical(parallelly:::detect_cores(), n)
})

test_that("detectCores()'s count and Sys.which()'s answer are found without a shell, as they find them", {
  skip_if_not(startsWith(R.version$os, "linux"))
  expect_identical(parallelly:::cpuinfo_processors(), parallel::detectCores())
  expect_identical(parallelly:::cpuinfo_processors(tempfile()), NA_integer_)
  for (name in c("nproc", "sh", "Rscript", "no-such-program-here")) {
    expect_identical(parallelly:::find_on_path(name), unname(Sys.which(name)), info = name)
  }
  withr::local_envvar(PATH = "")
  expect_identical(parallelly:::find_on_path("nproc"), "")
})

test_that("each scheduler's env vars are honoured", {
  cases <- list(
    list(method = "SGE", env = c(NSLOTS = "3"), n = 3L),
    list(method = "PBS", env = c(PBS_NUM_PPN = "4"), n = 4L),
    list(method = "PBS", env = c(NCPUS = "5"), n = 5L),
    list(method = "PBS", env = c(PBS_NUM_PPN = "4", NCPUS = "5"), n = 4L),
    list(method = "Slurm", env = c(SLURM_CPUS_PER_TASK = "3", SLURM_CPUS_ON_NODE = "6"), n = 3L),
    list(method = "Slurm", env = c(SLURM_CPUS_ON_NODE = "6"), n = 6L),
    list(method = "Slurm", env = c(SLURM_JOB_NUM_NODES = "1", SLURM_CPUS_ON_NODE = "6"), n = 6L),
    list(method = "Slurm", env = c(SLURM_JOB_NUM_NODES = "3", SLURM_CPUS_ON_NODE = "6",
                                   SLURM_TASKS_PER_NODE = "3(x2),1"), n = 3L),
    list(method = "Slurm", env = c(SLURM_NNODES = "2", SLURM_TASKS_PER_NODE = "5,2"), n = 5L),
    list(method = "LSF", env = c(LSB_DJOB_NUMPROC = "7"), n = 7L),
    list(method = "PJM", env = c(PJM_VNODE_CORE = "6"), n = 6L),
    list(method = "PJM", env = c(PJM_PROC_BY_NODE = "2"), n = 2L),
    list(method = "BiocParallel", env = c(BIOCPARALLEL_WORKER_NUMBER = "3"), n = 3L),
    list(method = "_R_CHECK_LIMIT_CORES_", env = c("_R_CHECK_LIMIT_CORES_" = "TRUE"), n = 2L),
    list(method = "_R_CHECK_LIMIT_CORES_", env = c("_R_CHECK_LIMIT_CORES_" = "warn"), n = 2L),
    list(method = "Bioconductor", env = c(IS_BIOC_BUILD_MACHINE = "true"), n = 4L),
    list(method = "Bioconductor", env = c(BBS_HOME = "/home/biocbuild"), n = 4L)
  )
  for (case in cases) {
    local({
      local_clean_cores(system = 8L)
      withr::local_envvar(case$env)
      info <- paste(case$method, paste(names(case$env), case$env, sep = "=", collapse = " "))
      expected <- setNames(case$n, case$method)
      expect_identical(availableCores(methods = case$method), expected, info = info)
      expect_identical(availableCores(methods = c("system", case$method)), expected,
                       info = info)
      all <- availableCores(methods = c("system", case$method), which = "all")
      expect_identical(all, c(system = 8L, expected), info = info)
    })
  }
})

test_that("methods that do not apply are skipped or give the default", {
  local_clean_cores(system = 8L)
  withr::local_envvar("_R_CHECK_LIMIT_CORES_" = "false")
  for (method in c("SGE", "PBS", "Slurm", "LSF", "PJM", "BiocParallel",
                   "_R_CHECK_LIMIT_CORES_", "Bioconductor", "mc.cores",
                   "fallback", "custom")) {
    expect_identical(availableCores(methods = method), c(current = 1L), info = method)
    expect_identical(availableCores(methods = c("system", method)), c(system = 8L),
                     info = method)
  }
  expect_identical(availableCores(methods = "SGE", default = c(dflt = 3L)), c(dflt = 3L))
  all <- availableCores(methods = c("system", "SGE"), na.rm = FALSE, which = "all")
  expect_identical(all, c(system = 8L, SGE = NA_integer_))
})

test_that("LSF is cached until the closure's 'n' is reset", {
  local_clean_cores(system = 8L)
  withr::local_envvar(LSB_DJOB_NUMPROC = "2")
  expect_identical(availableCores(methods = "LSF"), c(LSF = 2L))
  withr::local_envvar(LSB_DJOB_NUMPROC = "3")
  expect_identical(availableCores(methods = "LSF"), c(LSF = 2L))
  lsf <- environment(parallelly:::availableCoresLSF)
  lsf$n <- NULL
  expect_identical(availableCores(methods = "LSF"), c(LSF = 3L))
})

test_that("zero or negative settings are errors", {
  for (env in list(c(NSLOTS = "0"), c(PBS_NUM_PPN = "-1"), c(SLURM_CPUS_PER_TASK = "0"),
                   c(BIOCPARALLEL_WORKER_NUMBER = "0"))) {
    local({
      local_clean_cores(system = 8L)
      withr::local_envvar(env)
      expect_error(availableCores(), "Detected invalid (zero or less) core settings",
                   fixed = TRUE, info = names(env))
    })
  }
  local_clean_cores(system = 8L)
  withr::local_envvar(NSLOTS = "three")
  expect_error(availableCores(), "NSLOTS")
})

test_that("option mc.cores counts, with 0 meaning one core", {
  local_clean_cores(system = 8L)
  withr::local_options(mc.cores = 3L)
  expect_identical(availableCores(methods = c("system", "mc.cores")), c(mc.cores = 3L))
  withr::local_options(mc.cores = 0L)
  expect_identical(availableCores(methods = "mc.cores"), c(mc.cores = 1L))
})

test_that("the fallback applies only when nothing but hardware limits speaks", {
  local_clean_cores(system = 8L)
  withr::local_options(parallelly.availableCores.fallback = 2L)
  expect_identical(availableCores(methods = c("system", "fallback")),
                   c(fallback = 2L))
  ## A hardware/OS limit below the system count disables the fallback
  local({
    withr::local_options(parallelly.availableCores.system = 200L,
                         parallelly.availableConnections = 40)
    n <- availableCores(methods = c("system", "fallback"), constraints = "connections")
    expect_identical(names(n), "connections")
  })
  withr::local_envvar(NSLOTS = "4")
  expect_identical(availableCores(methods = c("system", "SGE", "fallback")), c(SGE = 4L))
  expect_false("fallback" %in% names(
    availableCores(methods = c("system", "SGE", "fallback"), which = "all")))
  ## A fallback larger than the hardware does not raise the count
  withr::local_options(parallelly.availableCores.fallback = 16L)
  expect_identical(availableCores(methods = c("system", "fallback")), c(system = 8L))
})

test_that("custom functions and other option/env var names are methods", {
  local_clean_cores(system = 8L)
  withr::local_options(parallelly.availableCores.custom = function() 3L)
  expect_identical(availableCores(methods = c("system", "custom")), c(custom = 3L))
  withr::local_options(parallelly.availableCores.custom = "not a function")
  expect_error(availableCores(methods = "custom"), "custom")

  withr::local_options(my.cores.option = 5L)
  expect_identical(availableCores(methods = "my.cores.option"), c(my.cores.option = 5L))
  withr::local_envvar(MY_CORES_ENVVAR = "6")
  expect_identical(availableCores(methods = "MY_CORES_ENVVAR"), c(MY_CORES_ENVVAR = 6L))
})

test_that("'omit', 'max' and option availableCores.min adjust the result", {
  local_clean_cores(system = 8L)
  expect_identical(availableCores(methods = "system", omit = 2L), c(system = 6L))
  expect_identical(availableCores(methods = "system", omit = 10L), c(system = 1L))
  expect_identical(availableCores(methods = "system", max = 3), c(system = 3L))
  expect_identical(availableCores(methods = "system", max = Inf), c(system = 8L))
  withr::local_options(parallelly.availableCores.omit = 1L,
                       parallelly.availableCores.max = 4)
  expect_identical(availableCores(methods = "system"), c(system = 4L))

  expect_error(availableCores(omit = -1L), "omit")
  expect_error(availableCores(max = 0), "max")
  expect_error(availableCores(which = "median"))

  local_clean_cores(system = 8L)
  withr::local_options(mc.cores = 1L, parallelly.availableCores.min = 2L)
  expect_identical(availableCores(methods = c("system", "mc.cores")), c("mc.cores*" = 2L))
  withr::local_options(parallelly.availableCores.min = 0L)
  expect_error(availableCores(methods = "system"), "availableCores.min")
})

test_that("constraint 'multicore' gives one core when forking is not allowed", {
  local_clean_cores(system = 8L)
  withr::local_options(parallelly.fork.enable = FALSE)
  expect_identical(availableCores(methods = "system", constraints = "multicore"),
                   c(system = 1L))
  withr::local_options(parallelly.fork.enable = TRUE)
  expect_identical(availableCores(methods = "system", constraints = "multicore"),
                   c(system = 8L))
})

test_that("constraints 'connections' and 'connections-N' limit by free connections", {
  local_clean_cores(system = 200L)
  withr::local_options(parallelly.availableConnections = 40)
  free <- 40L - length(getAllConnections())
  expect_identical(availableCores(methods = "system", constraints = "connections"),
                   c(connections = free))
  expect_identical(availableCores(methods = "system", constraints = "connections-16"),
                   c("connections-16" = free - 16L))
  expect_identical(availableCores(methods = "system", constraints = "connections-100"),
                   c("connections-100" = 1L))
  expect_error(availableCores(constraints = 1), "constraints")
})

test_that("/proc/self/status Cpus_allowed_list and nproc are read", {
  status <- tempfile()
  on.exit(unlink(status))
  writeLines(c("Name:\tR", "Cpus_allowed:\tff", "Cpus_allowed_list:\t0-3,6"), status)
  expect_identical(parallelly:::getCpusAllowedListCount(status), 5L)
  writeLines("Name:\tR", status)
  expect_identical(parallelly:::getCpusAllowedListCount(status), NA_integer_)
  if (file.exists("/proc/self/status")) {
    n <- availableCores(methods = "/proc/self/status")
    expect_identical(names(n), "/proc/self/status")
    expect_gte(n, 1L)
  }
  n <- parallelly:::getNproc()
  expect_type(n, "integer")
  if (nzchar(Sys.which("nproc"))) expect_gte(n, 1L)
})

test_that("supportsMulticore() follows option parallelly.fork.enable", {
  local_clean_cores()
  res <- supportsMulticore()
  expect_true(is.logical(res) && length(res) == 1L && !is.na(res))
  if (.Platform$OS.type == "windows") expect_false(res)
  skip_on_os("windows")
  withr::local_options(parallelly.fork.enable = FALSE)
  expect_false(supportsMulticore())
  withr::local_options(parallelly.fork.enable = TRUE)
  expect_true(supportsMulticore())
  withr::local_options(parallelly.fork.enable = NULL, future.fork.enable = FALSE)
  expect_false(supportsMulticore())
})

test_that("supportsMulticore() is FALSE in the RStudio Console, with a one-time warning", {
  skip_on_os("windows")
  local_clean_cores()
  withr::local_envvar(RSTUDIO = "1", RSTUDIO_TERM = NA)
  withr::local_options(parallelly.supportsMulticore.disableOn = NULL,
                       future.supportsMulticore.disableOn = NULL,
                       parallelly.supportsMulticore.unstable = NULL)
  state <- parallelly:::multicore_state
  old <- state$warned
  on.exit(state$warned <- old)
  state$warned <- NULL
  expect_false(supportsMulticore())
  expect_warning(supportsMulticore(warn = TRUE), "ONE-TIME WARNING")
  expect_silent(supportsMulticore(warn = TRUE))

  ## The RStudio terminal is not disabled by default
  withr::local_envvar(RSTUDIO_TERM = "abc")
  expect_true(supportsMulticore())
  withr::local_options(parallelly.supportsMulticore.disableOn = "rstudio_term")
  expect_false(supportsMulticore())

  withr::local_envvar(RSTUDIO_TERM = NA)
  withr::local_options(parallelly.supportsMulticore.disableOn = character(0))
  expect_true(supportsMulticore())
})

test_that("isForkedChild() is FALSE here and TRUE in a forked child", {
  local_clean_cores()
  expect_false(isForkedChild())
  skip_if_not(supportsMulticore())
  job <- parallel::mcparallel(isForkedChild())
  res <- parallel::mccollect(job, wait = TRUE, timeout = 30)
  expect_true(res[[1]])
  res <- parallel::mclapply(1:2, function(i) isForkedChild(), mc.cores = 2L)
  expect_identical(unlist(res), c(TRUE, TRUE))
})

test_that("'fraction' keeps a share of the cores, rounded down, before 'omit'", {
  local_clean_cores(system = 8L)
  expect_identical(availableCores(methods = "system", fraction = 0.5), c(system = 4L))
  expect_identical(availableCores(methods = "system", fraction = 0.7), c(system = 5L))
  expect_identical(availableCores(methods = "system", fraction = 0.7, omit = 1), c(system = 4L))
  expect_identical(availableCores(methods = "system", fraction = 0.01), c(system = 1L))
  expect_identical(availableCores(methods = "system", fraction = 1), c(system = 8L))
  expect_identical(availableCores(methods = "system", fraction = 0.5, max = 3), c(system = 3L))
  all <- availableCores(methods = c("system", "mc.cores"), which = "all", fraction = 0.5)
  expect_identical(all, c(system = 4L))
  withr::local_options(mc.cores = 6L)
  expect_identical(availableCores(methods = c("system", "mc.cores"), which = "all", fraction = 0.5),
                   c(system = 4L, mc.cores = 3L))

  withr::local_options(parallelly.availableCores.fraction = 0.25)
  expect_identical(availableCores(methods = "system"), c(system = 2L))
  expect_identical(availableCores(methods = "system", fraction = 1), c(system = 8L))

  for (bad in list(0, -0.5, 1.5, NA_real_, c(0.5, 0.5), "0.5", Inf)) {
    expect_error(availableCores(methods = "system", fraction = bad), "fraction",
                 class = "parallellyArgumentError")
  }
})

test_that("R_PARALLELLY_AVAILABLECORES_FRACTION sets the option when the package loads", {
  out <- rscript_output(c("-e", "invisible(loadNamespace('parallelly')); cat(getOption('parallelly.availableCores.fraction'), parallelly::availableCores(methods = 'system', fraction = getOption('parallelly.availableCores.fraction')))"),
                       env = c(R_PARALLELLY_AVAILABLECORES_FRACTION = "0.5",
                               R_PARALLELLY_AVAILABLECORES_SYSTEM = "6"))
  expect_identical(as.character(out), "0.5 3")
})

test_that("option availableCores.methods.excludes drops methods, whatever 'methods' says", {
  local_clean_cores(system = 8L)
  withr::local_options(mc.cores = 3L)
  expect_identical(availableCores(methods = c("system", "mc.cores")), c(mc.cores = 3L))
  withr::local_options(parallelly.availableCores.methods.excludes = "mc.cores")
  expect_identical(availableCores(methods = c("system", "mc.cores")), c(system = 8L))
  expect_false("mc.cores" %in% names(availableCores(which = "all")))
  withr::local_options(parallelly.availableCores.methods.excludes = c(" mc.cores , system", "nproc"))
  expect_identical(availableCores(methods = c("system", "mc.cores", "nproc")), c(current = 1L))
  withr::local_options(parallelly.availableCores.methods.excludes = 42)
  expect_error(availableCores(methods = "system"), "methods.excludes", class = "parallellyOptionError")
})
