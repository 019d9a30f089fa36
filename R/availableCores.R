## availableCores(): the number of cores this R process may use.
##
## Each method gives a count or NA; the counts are then combined.  Method
## readers are one small function each so that availableWorkers() can use
## them too.

#' Get the number of CPU cores this R process may use
#'
#' `availableCores()` asks several sources how many CPU cores the current R process is
#' allowed to use and, by default, returns the smallest answer. The sources include the
#' hardware, the CPU affinity and control-group (cgroups v1 and v2) limits of the process,
#' R options and environment variables, and the settings of common job schedulers. Use it
#' instead of [parallel::detectCores()] when deciding how many workers to start: on a
#' shared machine, in a container, or in a scheduled job, the number of cores in the machine
#' is rarely the number you may use.
#'
#' @section Methods:
#' Each method gives a count, or `NA` when it does not apply:
#' * `"system"`: the number of cores of the machine, from [parallel::detectCores()]
#'   (option `parallelly.availableCores.system` overrides it).
#' * `"/proc/self/status"`: the CPUs listed in `Cpus_allowed_list` (the CPU affinity of
#'   this process; Linux).
#' * `"cgroups.cpuset"`, `"cgroups.cpuquota"`, `"cgroups2.cpuset.cpus"`,
#'   `"cgroups2.cpuset.cpus.effective"`, `"cgroups2.cpu.max"`: limits set by Linux control
#'   groups, as used by containers (Docker, Kubernetes) and by some schedulers: the CPU set
#'   of cgroups v1 (`cpuset.cpus`), the CPU quota of cgroups v1 (`cpu.cfs_quota_us` /
#'   `cpu.cfs_period_us`), the CPU set of cgroups v2 as configured (`cpuset.cpus`, looked up
#'   from this process's cgroup towards the root; empty means inherited, which gives `NA`)
#'   and in effect (`cpuset.cpus.effective`), and the CPU quota of cgroups v2 (`cpu.max`).
#'   Fractional quotas are rounded to the nearest whole number, with a minimum of one.
#' * `"nproc"`: the output of the `nproc` program, run without `OMP_NUM_THREADS` and
#'   `OMP_THREAD_LIMIT`.
#' * `"mc.cores"`: R option `mc.cores` (which the \pkg{parallel} package sets from
#'   environment variable `MC_CORES`); zero counts as one.
#' * `"BiocParallel"`: environment variable `BIOCPARALLEL_WORKER_NUMBER`.
#' * `"_R_CHECK_LIMIT_CORES_"`: two cores when this environment variable is set to
#'   anything but `"false"`, as `R CMD check --as-cran` does.
#' * `"Bioconductor"`: four cores on the Bioconductor build machines
#'   (`IS_BIOC_BUILD_MACHINE=true`).
#' * `"LSF"`, `"PJM"`, `"PBS"`, `"SGE"`, `"Slurm"`: the cores allocated to the current job
#'   by these schedulers (`LSB_DJOB_NUMPROC`; `PJM_VNODE_CORE` or `PJM_PROC_BY_NODE`;
#'   `PBS_NUM_PPN` or `NCPUS`; this machine's slots in the file `PE_HOSTFILE`, else `NSLOTS`;
#'   `SLURM_CPUS_PER_TASK`, else `SLURM_CPUS_ON_NODE`
#'   for single-node jobs, else the first entry of `SLURM_TASKS_PER_NODE`).
#'
#'   For Slurm this is what the reference package gives: the CPUs of one task when
#'   `--cpus-per-task` is given, else the CPUs of a one-node job, else the tasks on the first
#'   node. It counts what the current R process may use itself, not all the CPUs of the job,
#'   which [availableWorkers()] lists node by node. For example, in a job with
#'   `--ntasks=3 --cpus-per-task=2`, `availableCores()` is 2 and `availableWorkers()` has six
#'   elements.
#' * `"fallback"`: option `parallelly.availableCores.fallback`. It is used only when all
#'   other answers come from the hardware and OS methods above and none of them is below
#'   `"system"`, that is, when nothing more specific limits the process.
#' * `"custom"`: the value of the function in option `parallelly.availableCores.custom`,
#'   called without arguments.
#' * Any other name is looked up first as an R option and then as an environment variable
#'   holding an integer.
#'
#' Option `parallelly.availableCores.methods.excludes` (environment variable
#' `R_PARALLELLY_AVAILABLECORES_METHODS_EXCLUDES`), a character vector or one
#' comma-separated string, names methods that are never asked, whatever `methods` says;
#' e.g. `"nproc"` on a machine where that program is slow or wrong.
#'
#' A count of zero or less is a configuration error and gives a
#' `parallellyInputError`; a setting that is not an integer gives a
#' `parallellyOptionError`.
#'
#' @section Command line:
#' `Rscript -e parallelly::availableCores` writes the count, under the name of the method
#' that gave it; arguments given as `--name=value` after it are passed on, e.g.
#' `Rscript -e parallelly::availableCores --omit=1`, `--fraction=0.5`, `--which=all` or
#' `--methods=system,nproc`. See [parallelly-command-line].
#'
#' @param constraints `NULL`, or a character vector of extra constraints. `"multicore"`
#' gives one core when forked processing is not supported (see [supportsMulticore()]).
#' `"connections"` limits the count to the number of free R connections
#' ([freeConnections()]), since each PSOCK worker needs one; `"connections-N"` also keeps
#' `N` connections free.
#' @param methods A character vector of the methods to ask (see section 'Methods').
#' @param na.rm If `TRUE`, methods that do not apply are dropped before the answers are
#' combined.
#' @param logical Passed to [parallel::detectCores()] by method `"system"`: count logical
#' CPUs (`TRUE`) or physical cores (`FALSE`).
#' @param default The value returned when no method gives an answer.
#' @param which `"min"` returns the smallest answer, `"max"` the largest, and `"all"` all of
#' them.
#' @param fraction The fraction of the cores to use, in (0, 1]: the count is multiplied by
#' it and rounded down, never below one. It is applied before `omit`, so
#' `availableCores(fraction = 0.7, omit = 1)` is `max(1, floor(0.7 * availableCores()) - 1)`.
#' Default: option `parallelly.availableCores.fraction` (environment variable
#' `R_PARALLELLY_AVAILABLECORES_FRACTION`), else 1.
#' @param omit The number of cores to leave unused. It is subtracted from the result, which
#' never drops below one.
#' @param max An upper bound on the result.
#'
#' @return A named integer vector, of length one unless `which = "all"`. The names say which
#' method gave each value. A name ending in `*` marks a value that was raised to the
#' minimum set by option `parallelly.availableCores.min`. The result is always at least
#' one.
#'
#' @examples
#' ## The number of cores to use, and which method decided it
#' availableCores()
#'
#' ## What every method says
#' availableCores(which = "all")
#'
#' ## Leave one core for the main R process
#' availableCores(omit = 1)
#'
#' ## Half of the cores, at least one
#' availableCores(fraction = 0.5)
#'
#' @seealso [availableWorkers()] for hostnames instead of counts;
#' [parallelly.options] for the options and environment variables involved.
#' @export
availableCores <- function(constraints = NULL,
                           methods = getOption2("parallelly.availableCores.methods", c("system", "/proc/self/status", "cgroups.cpuset", "cgroups.cpuquota", "cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective", "cgroups2.cpu.max", "nproc", "mc.cores", "BiocParallel", "_R_CHECK_LIMIT_CORES_", "Bioconductor", "LSF", "PJM", "PBS", "SGE", "Slurm", "fallback", "custom")),
                           na.rm = TRUE,
                           logical = getOption2("parallelly.availableCores.logical", TRUE),
                           default = c(current = 1L),
                           which = c("min", "max", "all"),
                           fraction = getOption2("parallelly.availableCores.fraction", 1.0),
                           omit = getOption2("parallelly.availableCores.omit", 0L),
                           max = getOption2("parallelly.availableCores.max", Inf)) {
  which <- match.arg(which)
  check_cores_args(constraints, methods, omit, max)
  check_cores_fraction(fraction)
  methods <- drop_excluded_methods(methods, "parallelly.availableCores.methods.excludes")
  methods <- c(methods, grep("^connections(-[0-9]+)?$", constraints, value = TRUE))
  methods <- unique(methods)

  ncores <- vapply(methods, FUN = availableCoresMethod, logical = logical,
                   FUN.VALUE = NA_integer_)
  names(ncores) <- methods
  check_core_counts(ncores)
  ncores <- apply_cores_fallback(ncores)
  if (na.rm) ncores <- ncores[!is.na(ncores)]
  if (length(ncores) == 0L) ncores <- default

  if ("multicore" %in% constraints && !supportsMulticore()) ncores[] <- 1L
  ncores <- switch(which,
    min = ncores[which.min(ncores)],
    max = ncores[which.max(ncores)],
    all = ncores
  )
  if (length(ncores) == 0L) ncores <- default  # all NA with na.rm = FALSE
  ncores <- apply_cores_min(ncores)
  ncores <- apply_cores_fraction(ncores, fraction)
  ncores <- apply_cores_omit_max(ncores, omit = omit, max = max)
  ncores
}

check_cores_fraction <- function(fraction) {
  if (length(fraction) != 1L || !is.numeric(fraction) || !is.finite(fraction) ||
      fraction <= 0 || fraction > 1) {
    stop_arg("fraction", "must be a single number greater than 0 and at most 1: %s", hpaste(fraction))
  }
}

# Option `option` (a character vector, or comma-separated names) lists methods never to ask.
drop_excluded_methods <- function(methods, option) {
  excludes <- getOption2(option, NULL)
  if (length(excludes) == 0L) return(methods)
  if (!is.character(excludes) || anyNA(excludes)) {
    stopf("Option", "Option '%s' must be a character vector of method names: %s", option, hpaste(excludes))
  }
  excludes <- trimws(unlist(strsplit(excludes, split = ",", fixed = TRUE), use.names = FALSE))
  setdiff(methods, excludes[nzchar(excludes)])
}

# fraction = 0.5 keeps half of each count, rounded down, at least one
apply_cores_fraction <- function(ncores, fraction) {
  if (fraction >= 1) return(ncores)
  nms <- names(ncores)
  ncores <- pmax(1L, as.integer(floor(fraction * ncores)))
  names(ncores) <- nms
  ncores
}

check_cores_args <- function(constraints, methods, omit, max) {
  if (!is.null(constraints) && !is.character(constraints)) {
    stop_arg("constraints", "must be NULL or a character vector")
  }
  if (!is.character(methods)) {
    stop_arg("methods", "must be a character vector")
  }
  if (length(omit) != 1L || !is.numeric(omit) || is.na(omit) || omit < 0) {
    stop_arg("omit", "must be a single non-negative integer: %s", hpaste(omit))
  }
  if (length(max) != 1L || !is.numeric(max) || is.na(max) || max < 1) {
    stop_arg("max", "must be a single number >= 1: %s", hpaste(max))
  }
}

## Zero or negative settings are user errors (e.g. NSLOTS=0); say which
check_core_counts <- function(ncores) {
  bad <- !is.na(ncores) & ncores <= 0L
  if (any(bad)) {
    stopf("Input", "Detected invalid (zero or less) core settings: %s", hpaste(sprintf("%s = %d", sQuote(names(ncores)[bad], q = FALSE),
                        ncores[bad]), maxHead = Inf))
  }
}

## Methods that only describe the hardware or OS limits; the fallback is
## meant for when nothing but these speaks
special_core_methods <- function(names) {
  names %in% c("system", "/proc/self/status", "cgroups.cpuset",
               "cgroups.cpuquota", "cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective",
               "cgroups2.cpu.max", "nproc") |
    grepl("^connections(-[0-9]+)?$", names)
}

## Keep 'fallback' only if all other known counts are special and none
## limits us below the system count; otherwise drop it
apply_cores_fallback <- function(ncores) {
  if (!"fallback" %in% names(ncores) || is.na(ncores[["fallback"]])) {
    return(ncores)
  }
  others <- ncores[names(ncores) != "fallback" & !is.na(ncores)]
  use <- all(special_core_methods(names(others)))
  if (use && "system" %in% names(others)) {
    use <- !any(others < others[["system"]])
  }
  if (!use) ncores <- ncores[names(ncores) != "fallback"]
  ncores
}

## Option parallelly.availableCores.min raises low counts; a '*' on the
## name shows that this happened
apply_cores_min <- function(ncores) {
  min <- getOption2("parallelly.availableCores.min", 1L)
  if (length(min) != 1L || !is.numeric(min) || is.na(min) || min < 1) {
    stopf("Option", "Option 'parallelly.availableCores.min' must be a single number >= 1: %s", hpaste(min))
  }
  low <- !is.na(ncores) & ncores < min
  if (any(low)) {
    ncores[low] <- as.integer(min)
    names(ncores)[low] <- paste0(names(ncores)[low], "*")
  }
  ncores
}

apply_cores_omit_max <- function(ncores, omit, max) {
  nms <- names(ncores)
  ncores <- pmax(1, ncores - omit)
  ncores <- as.integer(pmin(ncores, max))
  names(ncores) <- nms
  ncores
}


## One method's count, or NA if it does not apply
availableCoresMethod <- function(method, logical = TRUE) {
  n <- switch(method,
    "system" = detect_cores(logical = logical),
    "/proc/self/status" = getCpusAllowedListCount(),
    "cgroups.cpuset" = {
      cpus <- getCGroups1CpuSet()
      if (length(cpus) == 0L) NA_integer_ else length(cpus)
    },
    "cgroups.cpuquota" = round_cpu_quota(getCGroups1CpuQuota()),
    "cgroups2.cpuset.cpus" = cpu_set_count(getCGroups2CpuSet("cpuset.cpus")),
    "cgroups2.cpuset.cpus.effective" = cpu_set_count(getCGroups2CpuSet("cpuset.cpus.effective")),
    "cgroups2.cpu.max" = round_cpu_quota(getCGroups2CpuMax()),
    "nproc" = getNproc(),
    "mc.cores" = availableCoresMcCores(),
    "BiocParallel" = envvar_integer("BIOCPARALLEL_WORKER_NUMBER"),
    "_R_CHECK_LIMIT_CORES_" = availableCoresCheckLimit(),
    "Bioconductor" = availableCoresBioconductor(),
    "LSF" = availableCoresLSF(),
    "PJM" = availableCoresPJM(),
    "PBS" = availableCoresPBS(),
    "SGE" = availableCoresSGE(),
    "Slurm" = availableCoresSlurm(),
    "fallback" = option_integer(getOption2("parallelly.availableCores.fallback"),
                                "parallelly.availableCores.fallback"),
    "custom" = availableCoresCustom(),
    availableCoresOther(method)
  )
  if (length(n) != 1L) n <- NA_integer_
  as.integer(n)
}

## Integer value of an env var, NA if unset; an error if not an integer
envvar_integer <- function(name) {
  value <- envvar_or_na(name)
  if (is.na(value)) return(NA_integer_)
  n <- suppressWarnings(as.integer(value))
  if (is.na(n)) {
    stopf("Option", "Environment variable %s must be an integer: %s", name, sQuote(value, q = FALSE))
  }
  n
}

option_integer <- function(value, name) {
  if (is.null(value)) return(NA_integer_)
  n <- suppressWarnings(as.integer(value))
  if (length(n) != 1L || (is.na(n) && !isNA(value))) {
    stopf("Option", "Option %s must be a single integer: %s", sQuote(name, q = FALSE), hpaste(value))
  }
  n
}

cpu_set_count <- function(cpus) if (length(cpus) == 0L) NA_integer_ else length(cpus)

## cgroups quotas are fractions of CPUs; round, but never below one
round_cpu_quota <- function(quota) {
  if (is.na(quota)) return(NA_integer_)
  max(1L, as.integer(floor(quota + 0.5)))
}

## Option 'mc.cores' (set from MC_CORES by 'parallel'); 0 means one
availableCoresMcCores <- function() {
  n <- option_integer(getOption("mc.cores"), "mc.cores")
  if (!is.na(n) && n == 0L) n <- 1L
  n
}

## R CMD check --as-cran limits packages to two cores
availableCoresCheckLimit <- function() {
  value <- tolower(Sys.getenv("_R_CHECK_LIMIT_CORES_", ""))
  if (nzchar(value) && value != "false") 2L else NA_integer_
}

## The Bioconductor build machines allow four cores
availableCoresBioconductor <- function() {
  bioc <- tolower(Sys.getenv("IS_BIOC_BUILD_MACHINE", ""))
  if (bioc == "true" || nzchar(Sys.getenv("BBS_HOME", ""))) 4L else NA_integer_
}

## LSF: cores of this job; cached, reset with environment(f)$n <- NULL
availableCoresLSF <- local({
  n <- NULL
  function() {
    if (!is.null(n)) return(n)
    n <<- envvar_integer("LSB_DJOB_NUMPROC")
    n
  }
})

## Fujitsu PJM: cores per virtual node, else processes per node.  The env
## vars are read on every call; 'n' holds the last answer.
availableCoresPJM <- local({
  n <- NULL
  function() {
    n <<- envvar_integer("PJM_VNODE_CORE")
    if (is.na(n)) n <<- envvar_integer("PJM_PROC_BY_NODE")
    n
  }
})

## PBS/Torque set PBS_NUM_PPN; PBS Pro sets NCPUS
availableCoresPBS <- function() {
  n <- envvar_integer("PBS_NUM_PPN")
  if (is.na(n)) n <- envvar_integer("NCPUS")
  n
}

## SGE: this machine's slots in PE_HOSTFILE (NSLOTS counts every host of a multi-host job),
## as the reference's development line does; NSLOTS where that file is unset or missing, or
## does not list this machine.
availableCoresSGE <- function() {
  pathname <- envvar_or_na("PE_HOSTFILE")
  if (!is.na(pathname) && file.exists(pathname)) {
    data <- read_pe_hostfile(pathname)
    short <- function(x) sub("[.].*$", "", tolower(x))
    mine <- short(data$node) == short(Sys.info()[["nodename"]])
    if (any(mine)) return(sum(data$count[mine]))
  }
  envvar_integer("NSLOTS")
}

## Slurm: CPUs per task if requested; else the CPUs on this node for
## single-node jobs; else the tasks on the first node
availableCoresSlurm <- function() {
  n <- envvar_integer("SLURM_CPUS_PER_TASK")
  if (!is.na(n)) return(n)
  nnodes <- envvar_integer("SLURM_JOB_NUM_NODES")
  if (is.na(nnodes)) nnodes <- envvar_integer("SLURM_NNODES")
  if (is.na(nnodes) || nnodes == 1L) {
    n <- envvar_integer("SLURM_CPUS_ON_NODE")
    if (!is.na(n)) return(n)
  }
  tasks <- envvar_or_na("SLURM_TASKS_PER_NODE")
  if (is.na(tasks)) return(NA_integer_)
  slurm_expand_tasks_per_node(tasks)[1]
}

## The function in option `name` (NULL if unset); anything else set there is an error.
custom_option_function <- function(name) {
  fcn <- getOption2(name, NULL)
  if (!is.null(fcn) && !is.function(fcn)) {
    stopf("Option", "Option '%s' must be a function", name)
  }
  fcn
}

## User-supplied function in option parallelly.availableCores.custom
availableCoresCustom <- function() {
  fcn <- custom_option_function("parallelly.availableCores.custom")
  if (is.null(fcn)) return(NA_integer_)
  n <- fcn()
  if (length(n) != 1L || !is.numeric(n)) {
    stopf("Option", "The function in option 'parallelly.availableCores.custom' must return a single integer: %s", hpaste(n))
  }
  as.integer(n)
}

## 'connections' and 'connections-N': connections left for workers
availableCoresConnections <- function(method) {
  reserve <- as.integer(sub("^connections-?", "", method))
  if (is.na(reserve)) reserve <- 0L
  free <- freeConnections()
  if (is.infinite(free)) return(NA_integer_)
  max(1L, as.integer(free) - reserve)
}

## Any other method is the name of an option, else of an env var
availableCoresOther <- function(method) {
  if (grepl("^connections(-[0-9]+)?$", method)) {
    return(availableCoresConnections(method))
  }
  value <- getOption(method, NULL)
  if (!is.null(value)) return(option_integer(value, method))
  envvar_integer(method)
}


## /proc/self/status 'Cpus_allowed_list', e.g. "0-3,8" -> 5
getCpusAllowedListCount <- function(pathname = "/proc/self/status") {
  lines <- read_lines_or_empty(pathname)
  line <- grep("^Cpus_allowed_list:", lines, value = TRUE)
  if (length(line) == 0L) return(NA_integer_)
  cpus <- parse_cpu_list(trimws(sub("^Cpus_allowed_list:", "", line[1])))
  if (length(cpus) == 0L) NA_integer_ else length(cpus)
}

## What parallel::detectCores() answers on Linux (either `logical`): the lines of
## /proc/cpuinfo that start with "processor", NA for none. It counts them through a shell
## (grep | wc: three processes, ~5 ms); read here directly.
cpuinfo_processors <- function(file = "/proc/cpuinfo") {
  lines <- tryCatch(suppressWarnings(readLines(file, warn = FALSE)), error = function(e) character(0))
  n <- sum(startsWith(lines, "processor"))
  if (n >= 1L) as.integer(n) else NA_integer_
}

## The first program `name` on the PATH that may be executed, as Sys.which() finds it, without
## its shell and `which` (two processes).
find_on_path <- function(name) {
  dirs <- strsplit(Sys.getenv("PATH"), .Platform$path.sep, fixed = TRUE)[[1L]]
  dirs <- dirs[nzchar(dirs)]
  if (length(dirs) == 0L) return("")
  paths <- file.path(dirs, name)
  ok <- file.access(paths, 1L) == 0L & !dir.exists(paths)
  if (any(ok)) paths[which(ok)[1L]] else ""
}

## 'nproc' honours CPU affinity; OMP_* would make it report the OpenMP
## thread limit instead, so they are unset while it runs.  Cached.
getNproc <- local({
  cache <- NULL
  function(ignore = c("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")) {
    if (!is.null(cache)) return(cache)
    bin <- if (.Platform$OS.type == "unix") find_on_path("nproc") else Sys.which("nproc")
    if (!nzchar(bin)) {
      cache <<- NA_integer_
      return(cache)
    }
    old <- Sys.getenv(ignore, unset = NA, names = TRUE)
    old <- old[!is.na(old)]
    Sys.unsetenv(ignore)
    on.exit(if (length(old) > 0L) do.call(Sys.setenv, as.list(old)))
    out <- tryCatch(suppressWarnings(system2(bin, stdout = TRUE, stderr = FALSE)),
                    error = function(ex) NA_character_)
    n <- suppressWarnings(as.integer(out[1]))
    cache <<- if (length(n) == 1L && !is.na(n) && n > 0L) n else NA_integer_
    cache
  }
})

## The number of cores on the machine; option
## parallelly.availableCores.system overrides it (for tests and for
## machines where parallel::detectCores() is wrong)
detect_cores <- local({
  cache <- list()
  function(logical = TRUE) {
    value <- getOption2("parallelly.availableCores.system", NULL)
    if (!is.null(value) && !isNA(value)) {
      return(option_integer(value, "parallelly.availableCores.system"))
    }
    key <- if (isTRUE(logical)) "logical" else "physical"
    if (is.null(cache[[key]])) {
      n <- if (startsWith(R.version$os, "linux")) cpuinfo_processors() else parallel::detectCores(logical = logical)
      if (length(n) != 1L || is.na(n) || n < 1L) n <- 1L
      cache[[key]] <<- as.integer(n)
    }
    cache[[key]]
  }
})

# Callable as `Rscript -e parallelly::availableCores --omit=1` (R/commandLine.R).
availableCores <- structure(availableCores, class = c("cli_fcn", "function"), cli_args = list(
  constraints = "list", methods = "list", na.rm = "logical", logical = "logical",
  default = "integer", which = "character", fraction = "numeric", omit = "integer", max = "numeric"))
