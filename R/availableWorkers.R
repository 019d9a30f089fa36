## availableWorkers(): hostnames of the workers this R process may use.
##
## Core-count methods give rep(localhost, n); HPC schedulers give their
## host lists.  The host-file parsers are separate so they can be tested.

#' Get the hostnames of the workers this R process may use
#'
#' `availableWorkers()` returns one hostname per worker that the current R process may
#' start, for example to pass to [makeClusterPSOCK()]. In a job of a scheduler (LSF, PJM,
#' PBS/Torque, SGE, Slurm) these are the hosts and slots allocated to the job. Otherwise it is
#' `"localhost"` repeated as many times as [availableCores()] allows.
#'
#' @section Methods:
#' * `"LSF"`: the hostnames in `LSB_HOSTS`, one per slot.
#' * `"PJM"`: the nodes listed in the file `PJM_O_NODEINF`, in the order of the file, each
#'   repeated by the number of cores per node.
#' * `"PBS"`: the lines of the file `PBS_NODEFILE`, one per slot, sorted by hostname (as the
#'   reference package does), so that the slots of a host are next to each other. When
#'   `PBS_NP`, or `PBS_NUM_NODES` times `PBS_NUM_PPN`, is set and differs from the number of
#'   lines, there is a warning (as with the reference) and the file is used; unlike the
#'   reference, variables that are not set give no warning (PBS Pro does not set
#'   `PBS_NUM_NODES` and `PBS_NUM_PPN`).
#' * `"SGE"`: the hosts and slot counts in the file `PE_HOSTFILE`.
#' * `"Slurm"`: the nodes of the job in `SLURM_JOB_NODELIST` (or `SLURM_NODELIST`),
#'   expanded from Slurm's compact notation such as `n[01-03]`, each repeated by the number
#'   of CPUs the job has on it, from `SLURM_JOB_CPUS_PER_NODE` (where that is unset, the
#'   node's count in `SLURM_TASKS_PER_NODE` times `SLURM_CPUS_PER_TASK`). So a job gets one
#'   worker per allocated CPU: `--ntasks=3 --cpus-per-task=2` gives six workers, and
#'   `--nodes=2 --ntasks=3 --cpus-per-task=2` gives four on the node with two tasks and two
#'   on the other (the reference package 1.34 gives two on each). The job's variables are
#'   used also inside a job step (`srun`), whose own node list and task counts describe only
#'   the step. A count list that does not match the node list gives a warning and one
#'   worker per node.
#' * `"custom"`: the character vector returned by the function in option
#'   `parallelly.availableWorkers.custom`.
#' * Every other method is a method of [availableCores()] and gives `"localhost"` (option
#'   `parallelly.localhost.hostname`) repeated by its count.
#'
#' A host file that is named by one of these environment variables but does not exist gives
#' a warning, and the method is skipped.
#'
#' Option `parallelly.availableWorkers.methods.excludes` (environment variable
#' `R_PARALLELLY_AVAILABLEWORKERS_METHODS_EXCLUDES`), a character vector or one
#' comma-separated string, names methods that are never asked, whatever `methods` says.
#'
#' `Rscript -e parallelly::availableWorkers` writes the workers on one line, separated by
#' spaces; arguments given as `--name=value` after it are passed on (see
#' [parallelly-command-line]).
#'
#' @param constraints `NULL`, or a character vector of constraints. `"connections"` (or
#' `"connections-N"`, which keeps `N` connections free) drops workers beyond the number of
#' free R connections.
#' @param methods A character vector of the methods to ask (see section 'Methods').
#' @param na.rm If `TRUE`, methods that give no hostnames are dropped. Only used with
#' `which = "all"`.
#' @param logical Passed on to [availableCores()] for the methods that count local cores.
#' @param default The hostnames returned when no method gives an answer.
#' @param which `"auto"` returns the answer of the first method (in the order of `methods`)
#' that gives one, where all methods that count local cores are first reduced to the
#' smallest of their counts. `"min"` and `"max"` return the shortest and the longest answer,
#' and `"all"` a named list with every method's answer.
#'
#' @return A character vector of hostnames, with one element per worker; hosts that offer
#' several slots appear several times. With `which = "all"`, a named list of such vectors.
#'
#' @examples
#' ## On a plain machine: "localhost", once per available core
#' availableWorkers()
#'
#' ## A custom host list
#' oopts <- options(parallelly.availableWorkers.custom = function() {
#'   c("n1", "n1", "n2")
#' })
#' availableWorkers()
#' options(oopts)
#'
#' @seealso [availableCores()] for the number of local cores;
#' [parallelly.options] for the options and environment variables involved.
#' @export
availableWorkers <- function(constraints = NULL,
                             methods = getOption2("parallelly.availableWorkers.methods", c("mc.cores", "BiocParallel", "_R_CHECK_LIMIT_CORES_", "Bioconductor", "LSF", "PJM", "PBS", "SGE", "Slurm", "custom", "/proc/self/status", "cgroups.cpuset", "cgroups.cpuquota", "cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective", "cgroups2.cpu.max", "nproc", "system", "fallback")),
                             na.rm = TRUE,
                             logical = getOption2("parallelly.availableCores.logical", TRUE),
                             default = getOption2("parallelly.localhost.hostname", "localhost"),
                             which = c("auto", "min", "max", "all")) {
  which <- match.arg(which)
  if (!is.character(methods)) {
    stop_arg("methods", "must be a character vector")
  }
  methods <- drop_excluded_methods(methods, "parallelly.availableWorkers.methods.excludes")
  localhost <- getOption2("parallelly.localhost.hostname", "localhost")
  workers <- lapply(methods, FUN = availableWorkersMethod,
                    localhost = localhost, logical = logical)
  names(workers) <- methods
  workers <- drop_workers_fallback(workers, localhost)

  if (which == "all") {
    if (na.rm) return(workers[lengths(workers) > 0L])
    workers[lengths(workers) == 0L] <- list(NA_character_)
    return(workers)
  }
  workers <- harmonize_localhost_workers(workers, localhost)
  workers <- workers[lengths(workers) > 0L]
  if (length(workers) == 0L) return(default)
  res <- switch(which,
    auto = workers[[1]],
    min = workers[[which.min(lengths(workers))]],
    max = workers[[which.max(lengths(workers))]]
  )
  apply_workers_constraints(res, constraints)
}

## Host-list methods; all other methods count cores on the localhost
hpc_worker_methods <- c("LSF", "PJM", "PBS", "SGE", "Slurm", "custom")

availableWorkersMethod <- function(method, localhost = "localhost",
                                   logical = TRUE) {
  w <- switch(method,
    LSF = availableWorkersLSF(),
    PJM = availableWorkersPJM(),
    PBS = availableWorkersPBS(),
    SGE = availableWorkersSGE(),
    Slurm = availableWorkersSlurm(),
    custom = availableWorkersCustom(),
    {
      n <- availableCoresMethod(method, logical = logical)
      if (is.na(n)) NULL else rep(localhost, times = max(1L, n))
    }
  )
  if (length(w) == 0L) character(0L) else as.character(w)
}

## Same rule as availableCores(): the fallback counts only when nothing
## but hardware/OS limits speaks
drop_workers_fallback <- function(workers, localhost) {
  if (!"fallback" %in% names(workers)) return(workers)
  counts <- lengths(workers)
  counts[counts == 0L] <- NA_integer_
  counts <- apply_cores_fallback(counts)
  if (!"fallback" %in% names(counts)) workers[["fallback"]] <- character(0L)
  workers
}

## Core-count methods say "this many cores here"; the tightest applies
harmonize_localhost_workers <- function(workers, localhost) {
  is_local <- !names(workers) %in% hpc_worker_methods & lengths(workers) > 0L
  if (any(is_local)) {
    n <- min(lengths(workers[is_local]))
    workers[is_local] <- list(rep(localhost, times = n))
  }
  workers
}

## 'connections' / 'connections-N': no more workers than free connections
apply_workers_constraints <- function(workers, constraints) {
  for (constraint in grep("^connections(-[0-9]+)?$", constraints, value = TRUE)) {
    n <- availableCoresConnections(constraint)
    if (!is.na(n) && length(workers) > n) workers <- workers[seq_len(n)]
  }
  workers
}

## A scheduler env var that points to a file that is not there; the
## method is then skipped
warn_missing_hostfile <- function(envvar, pathname) {
  warning(sprintf("Environment variable %s is set but no such file exists: %s",
                  envvar, sQuote(pathname, q = FALSE)), call. = FALSE)
  NULL
}

## LSF: LSB_HOSTS lists one hostname per allocated slot
availableWorkersLSF <- function() {
  hosts <- envvar_or_na("LSB_HOSTS")
  if (is.na(hosts)) return(NULL)
  hosts <- strsplit(trimws(hosts), split = "[[:space:]]+")[[1]]
  hosts[nzchar(hosts)]
}

## PJM: PJM_O_NODEINF lists the nodes; each gets the cores per node
availableWorkersPJM <- function() {
  pathname <- envvar_or_na("PJM_O_NODEINF")
  if (is.na(pathname)) return(NULL)
  if (!file.exists(pathname)) return(warn_missing_hostfile("PJM_O_NODEINF", pathname))
  nodes <- read_pjm_nodefile(pathname, sort = FALSE)$node
  n <- availableCoresPJM()
  if (is.na(n)) n <- 1L
  rep(nodes, each = n)
}

## PBS/Torque: PBS_NODEFILE lists one hostname per allocated slot
availableWorkersPBS <- function() {
  pathname <- envvar_or_na("PBS_NODEFILE")
  if (is.na(pathname)) return(NULL)
  if (!file.exists(pathname)) return(warn_missing_hostfile("PBS_NODEFILE", pathname))
  nodes <- read_pbs_nodefile(pathname)$node
  check_pbs_counts(length(nodes), pathname)
  nodes
}

## The node file should list PBS_NP slots, and PBS_NUM_NODES * PBS_NUM_PPN (Torque). As the
## reference does, a mismatch is a warning and the node file is used; unlike the reference,
## a variable that is not set is not a mismatch (PBS Pro sets neither PBS_NUM_NODES nor
## PBS_NUM_PPN).
check_pbs_counts <- function(n, pathname) {
  np <- envvar_integer("PBS_NP")
  if (!is.na(np) && np != n) {
    warning(sprintf("Identified %d workers from the 'PBS_NODEFILE' file (%s), which does not match environment variable 'PBS_NP' = %d",
                    n, sQuote(pathname, q = FALSE), np), call. = FALSE)
  }
  nodes <- envvar_integer("PBS_NUM_NODES")
  ppn <- envvar_integer("PBS_NUM_PPN")
  if (!is.na(nodes) && !is.na(ppn) && nodes * ppn != n) {
    warning(sprintf("Identified %d workers from the 'PBS_NODEFILE' file (%s), which does not match environment variables 'PBS_NUM_NODES' * 'PBS_NUM_PPN' = %d * %d = %d",
                    n, sQuote(pathname, q = FALSE), nodes, ppn, nodes * ppn), call. = FALSE)
  }
}

## SGE: PE_HOSTFILE lists hostname and slot count per line
availableWorkersSGE <- function() {
  pathname <- envvar_or_na("PE_HOSTFILE")
  if (is.na(pathname)) return(NULL)
  if (!file.exists(pathname)) return(warn_missing_hostfile("PE_HOSTFILE", pathname))
  sge_expand_node_count_pairs(read_pe_hostfile(pathname))
}

## Slurm: the job's nodes, each repeated by the number of CPUs the job
## has there.  Job-level variables only: inside a job step (srun) the
## SLURM_NODELIST / SLURM_TASKS_PER_NODE of the step describe the step.
availableWorkersSlurm <- function() {
  nodelist <- envvar_or_na("SLURM_JOB_NODELIST")
  if (is.na(nodelist)) nodelist <- envvar_or_na("SLURM_NODELIST")
  if (is.na(nodelist)) return(NULL)
  nodes <- slurm_expand_nodelist(nodelist)
  if (length(nodes) == 0L) return(NULL)
  name <- "SLURM_JOB_CPUS_PER_NODE"
  spec <- envvar_or_na(name)
  per_task <- 1L
  if (is.na(spec)) {
    ## Older Slurm: tasks per node times CPUs per task
    name <- "SLURM_TASKS_PER_NODE"
    spec <- envvar_or_na(name)
    per_task <- envvar_integer("SLURM_CPUS_PER_TASK")
    if (is.na(per_task) || per_task < 1L) per_task <- 1L
  }
  if (is.na(spec)) return(nodes)
  counts <- slurm_expand_tasks_per_node(spec)
  if (length(counts) != length(nodes) || anyNA(counts) || any(counts < 1L)) {
    warning(sprintf(
      "Ignoring %s (%s): it gives %d counts for %d nodes in %s",
      name, sQuote(spec, q = FALSE), length(counts), length(nodes),
      sQuote(nodelist, q = FALSE)), call. = FALSE)
    return(nodes)
  }
  rep(nodes, times = counts * per_task)
}

availableWorkersCustom <- function() {
  fcn <- custom_option_function("parallelly.availableWorkers.custom")
  if (is.null(fcn)) return(NULL)
  w <- fcn()
  if (!is.character(w) || anyNA(w)) {
    stopf("Option", "The function in option 'parallelly.availableWorkers.custom' must return a character vector of hostnames without NAs")
  }
  w
}


## Lines of a host file, without comments and blank lines
read_host_lines <- function(pathname) {
  lines <- readLines(pathname, warn = FALSE)
  lines <- trimws(sub("#.*", "", lines))
  lines[nzchar(lines)]
}

## Hostnames sorted by name, as the reference package sorts node files
sort_nodes <- function(nodes) {
  nodes[order(nodes)]
}

## PBS node file: one hostname per line, one line per slot
read_pbs_nodefile <- function(pathname, sort = TRUE) {
  nodes <- read_host_lines(pathname)
  if (length(nodes) == 0L) {
    stopf("Input", "PBS node file is empty: %s", sQuote(pathname, q = FALSE))
  }
  if (sort) nodes <- sort_nodes(nodes)
  data.frame(node = nodes, stringsAsFactors = FALSE)
}

## PJM node file: one hostname (or IP number) per node; each node should
## be listed once
read_pjm_nodefile <- function(pathname, sort = TRUE) {
  nodes <- read_host_lines(pathname)
  if (length(nodes) == 0L) {
    warning(sprintf("PJM node file is empty: %s", sQuote(pathname, q = FALSE)),
            call. = FALSE)
  }
  dups <- unique(nodes[duplicated(nodes)])
  if (length(dups) > 0L) {
    warning(sprintf("PJM node file %s lists some nodes more than once: %s",
                    sQuote(pathname, q = FALSE), hpaste(dups)), call. = FALSE)
  }
  if (sort) nodes <- sort_nodes(nodes)
  data.frame(node = nodes, stringsAsFactors = FALSE)
}

## SGE PE_HOSTFILE: 'hostname slots queue processor-range' per line
read_pe_hostfile <- function(pathname, expand = FALSE) {
  lines <- read_host_lines(pathname)
  fields <- strsplit(lines, split = "[[:space:]]+")
  bad <- lengths(fields) < 2L
  if (any(bad)) {
    stopf("Input", "Invalid line in SGE host file %s: %s", sQuote(pathname, q = FALSE), sQuote(lines[bad][1], q = FALSE))
  }
  field <- function(k) vapply(fields, function(f) if (length(f) >= k) f[k] else NA_character_, "")
  data <- data.frame(node = field(1L), count = suppressWarnings(as.integer(field(2L))),
                     via = field(3L), request = field(4L),
                     stringsAsFactors = FALSE)
  if (anyNA(data$count) || any(data$count < 1L)) {
    stopf("Input", "Invalid slot count in SGE host file %s: %s", sQuote(pathname, q = FALSE), hpaste(field(2L)))
  }
  if (expand) sge_expand_node_count_pairs(data) else data
}

## data.frame(node, count) -> each node repeated 'count' times
sge_expand_node_count_pairs <- function(data) {
  if (!is.data.frame(data) || !all(c("node", "count") %in% names(data))) {
    stop_arg("data", "must be a data.frame with columns 'node' and 'count'")
  }
  rep(data$node, times = data$count)
}


## Slurm node lists such as "n1,n[03-05],rack[1-2]-gpu[1,3]".  Uses
## 'scontrol show hostnames' when available, else our own parser.
slurm_expand_nodelist <- function(nodelist,
                                  manual = getOption2("parallelly.slurm_expand_nodelist.manual", FALSE)) {
  if (!is.character(nodelist) || length(nodelist) != 1L || is.na(nodelist)) {
    stop_arg("nodelist", "must be a single string")
  }
  if (!isTRUE(manual)) {
    hosts <- slurm_scontrol_hostnames(nodelist)
    if (!is.null(hosts)) return(hosts)
  }
  specs <- split_top_level(trimws(nodelist))
  unlist(lapply(specs, FUN = expand_hostlist_spec, nodelist = nodelist),
         use.names = FALSE)
}

## NULL if scontrol is missing or fails
slurm_scontrol_hostnames <- function(nodelist) {
  bin <- Sys.which("scontrol")
  if (!nzchar(bin)) return(NULL)
  out <- tryCatch(suppressWarnings(
    system2(bin, args = c("show", "hostnames", sh_quote(nodelist)),
            stdout = TRUE, stderr = FALSE)), error = function(ex) NULL)
  if (is.null(out) || !is.null(attr(out, "status"))) return(NULL)
  out[nzchar(out)]
}

## Split on commas that are not inside brackets
split_top_level <- function(x) {
  chars <- strsplit(x, "")[[1]]
  depth <- cumsum((chars == "[") - (chars == "]"))
  cut <- which(chars == "," & depth == 0L)
  starts <- c(1L, cut + 1L)
  ends <- c(cut - 1L, length(chars))
  parts <- substring(x, starts, ends)
  parts[nzchar(parts)]
}

## "pre[1-2,5]post[a]" -> one hostname per combination, first group outer
expand_hostlist_spec <- function(spec, nodelist = spec) {
  m <- regexpr("\\[[^][]*\\]", spec)
  if (m == -1L) {
    if (grepl("[][]", spec)) {
      stopf("Input", "Unbalanced brackets in Slurm node list: %s", sQuote(nodelist, q = FALSE))
    }
    return(spec)
  }
  len <- attr(m, "match.length")
  prefix <- substr(spec, 1L, m - 1L)
  inner <- substr(spec, m + 1L, m + len - 2L)
  rest <- substr(spec, m + len, nchar(spec))
  values <- expand_hostlist_range(inner, nodelist = nodelist)
  unlist(lapply(paste0(prefix, values, rest), FUN = expand_hostlist_spec,
                nodelist = nodelist), use.names = FALSE)
}

## "1,03-05" -> c("1", "03", "04", "05"); zero padding is kept
expand_hostlist_range <- function(inner, nodelist = inner) {
  parts <- trimws(strsplit(inner, split = ",", fixed = TRUE)[[1]])
  unlist(lapply(parts, FUN = function(part) {
    m <- regmatches(part, regexec("^([0-9]+)-([0-9]+)$", part))[[1]]
    if (length(m) == 0L) {
      if (!grepl("^[[:alnum:]_.]+$", part)) {
        stopf("Input", "Invalid range %s in Slurm node list: %s", sQuote(part, q = FALSE), sQuote(nodelist, q = FALSE))
      }
      return(part)
    }
    from <- as.integer(m[2])
    to <- as.integer(m[3])
    if (from > to) {
      stopf("Input", "Invalid range %s in Slurm node list: %s", sQuote(part, q = FALSE), sQuote(nodelist, q = FALSE))
    }
    formatC(seq(from, to), width = nchar(m[2]), flag = "0")
  }), use.names = FALSE)
}

## SLURM_TASKS_PER_NODE: "2(x3),1" -> c(2L, 2L, 2L, 1L)
slurm_expand_tasks_per_node <- function(tasks) {
  parts <- trimws(strsplit(tasks, split = ",", fixed = TRUE)[[1]])
  counts <- lapply(parts, FUN = function(part) {
    m <- regmatches(part, regexec("^([0-9]+)(\\(x([0-9]+)\\))?$", part))[[1]]
    if (length(m) == 0L) return(NA_integer_)
    times <- if (nzchar(m[4])) as.integer(m[4]) else 1L
    rep(as.integer(m[2]), times = times)
  })
  unlist(counts, use.names = FALSE)
}

# Callable as `Rscript -e parallelly::availableWorkers` (R/commandLine.R).
availableWorkers <- structure(availableWorkers, class = c("cli_fcn", "function"), cli_args = list(
  constraints = "list", methods = "list", na.rm = "logical", logical = "logical",
  default = "character", which = "character"))
