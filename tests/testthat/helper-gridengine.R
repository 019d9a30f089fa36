# Helpers for tests against a real Grid Engine on this machine (tools/gridengine-test-cluster.sh):
# sge_qmaster and sge_execd in a PID namespace of their own, all files in a temporary
# directory; exec hosts sgehost1 and sgehost2 in namespace hosts of their own. Queue all.q on
# this machine's name only (8 slots), queue span.q on all three hosts (1 slot here, 2 on each
# exec host; this machine first), parallel environment `smp` in both (control_slaves TRUE: `qrsh -inherit`
# works in its jobs).
#
#   cluster <- skip_if_no_gridengine()        # skip unless Grid Engine is installed here
#   gridengine_cmd(c("qstat", "-u", "*"))     # a client command, with a timeout
#   gridengine_r(quote(availableWorkers()), slots = 2)   # evaluate R in a qsub job
#
# Run such tests under `flock /tmp/parallelly-sge.lock` when several runs share the machine.

.gridengine_test_cluster_cache <- new.env(parent = emptyenv())

gridengine_test_cluster_script <- function() {
  script <- tryCatch(testthat::test_path("..", "..", "tools", "gridengine-test-cluster.sh"),
                     error = function(e) "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  script <- Sys.getenv("R_PARALLELLY_GRIDENGINE_TEST_CLUSTER_SCRIPT", "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  ""
}

# Why the cluster cannot run here, or "" if nothing is known to be missing.
gridengine_test_cluster_missing <- function() {
  if (.Platform$OS.type != "unix") return("not a Unix machine")
  missing <- character()
  if (!identical(Sys.info()[["effective_user"]], "root")) missing <- c(missing, "not running as root")
  bins <- c(`gridengine-master` = "/usr/sbin/sge_qmaster", `gridengine-exec` = "/usr/sbin/sge_execd",
            `gridengine-client` = "/usr/lib/gridengine/qsub")
  absent <- !file.exists(bins)
  if (any(absent))
    missing <- c(missing, paste("not installed:", paste(names(bins)[absent], collapse = ", ")))
  if (!nzchar(Sys.which("unshare"))) missing <- c(missing, "unshare not found")
  if (!nzchar(gridengine_test_cluster_script()))
    missing <- c(missing, paste("tools/gridengine-test-cluster.sh not found",
                                "(set R_PARALLELLY_GRIDENGINE_TEST_CLUSTER_SCRIPT)"))
  paste(missing, collapse = "; ")
}

gridengine_test_cluster_stop <- function() {
  cluster <- .gridengine_test_cluster_cache$cluster
  rm(list = ls(.gridengine_test_cluster_cache), envir = .gridengine_test_cluster_cache)
  if (is.null(cluster)) return(invisible())
  out <- suppressWarnings(system2("bash", c(shQuote(cluster$script), "stop", shQuote(cluster$dir)),
                                  stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L)
    warning("stopping the Grid Engine test cluster failed:\n", paste(out, collapse = "\n"), call. = FALSE)
  invisible()
}

# Start the cluster (once per test run): list(dir, env, host, port, script, started).
gridengine_test_cluster <- function() {
  if (!is.null(.gridengine_test_cluster_cache$error))
    stop(.gridengine_test_cluster_cache$error, call. = FALSE)
  if (!is.null(.gridengine_test_cluster_cache$cluster)) return(.gridengine_test_cluster_cache$cluster)
  why <- gridengine_test_cluster_missing()
  if (nzchar(why)) stop("Grid Engine test cluster unavailable: ", why, call. = FALSE)
  script <- gridengine_test_cluster_script()
  dir <- tempfile("gridengine-test-cluster-")
  # Below the kernel's ephemeral range, where any connection's local end may hold a port
  # (see helper-slurm.R), and apart from the other test services' ports.
  candidates <- seq(30000L, 32000L, by = 500L)
  port <- as.character(parallelly::freePort(candidates, default = candidates[1]))
  # The exec hosts have a /tmp of their own: this session's (jobs' directory, results) and
  # the library paths stay shared, as a cluster's shared file systems are.
  shared <- paste(normalizePath(c(tempdir(), .libPaths())), collapse = ":")
  out <- withr::with_envvar(c(GRIDENGINE_TEST_CLUSTER_OWNER_PID = Sys.getpid(),
                              GRIDENGINE_TEST_CLUSTER_PORT = port,
                              GRIDENGINE_TEST_CLUSTER_SHARED = shared),
    suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir)),
                             stdout = TRUE, stderr = TRUE)))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L) {
    msg <- paste0("starting the Grid Engine test cluster failed (exit status ", status, "):\n",
                  paste(out, collapse = "\n"))
    .gridengine_test_cluster_cache$error <- msg  # do not retry in every test
    unlink(dir, recursive = TRUE)
    stop(msg, call. = FALSE)
  }
  dir <- normalizePath(dir)
  env <- readLines(file.path(dir, "env.sh"))
  env <- sub("^export ", "", env)
  env <- setNames(gsub("'", "", sub("^[^=]*=", "", env)), sub("=.*$", "", env))
  exec_hosts <- sub("\\.hosts$", "", list.files(dir, pattern = "^sgehost[0-9]+\\.hosts$"))
  cluster <- list(dir = dir, env = env, host = Sys.info()[["nodename"]], port = as.integer(port),
                  exec_hosts = exec_hosts, script = script, started = out)
  .gridengine_test_cluster_cache$cluster <- cluster
  registered <- tryCatch({
    withr::defer(gridengine_test_cluster_stop(), envir = testthat::teardown_env())
    TRUE
  }, error = function(e) FALSE)
  if (!registered) reg.finalizer(.gridengine_test_cluster_cache, function(e) gridengine_test_cluster_stop(),
                                 onexit = TRUE)
  cluster
}

# Skip unless the Grid Engine test cluster runs (in CI: fail, see skip_unavailable()); returns
# it (see gridengine_test_cluster()) invisibly.
skip_if_no_gridengine <- function() {
  why <- gridengine_test_cluster_missing()
  if (nzchar(why)) skip_unavailable("Grid Engine test cluster", why)
  cluster <- tryCatch(gridengine_test_cluster(), error = function(e) e)
  if (inherits(cluster, "error")) skip_unavailable("Grid Engine test cluster", conditionMessage(cluster))
  invisible(cluster)
}

# The environment of client commands: the cluster's variables, its programs first on the PATH,
# this run's library paths (so that jobs load the package under test), and no variables of an
# enclosing job or of R CMD check.
gridengine_env <- function(cluster = gridengine_test_cluster()) {
  inherited <- grep("^(SGE_|JOB_ID$|PE_HOSTFILE$|NSLOTS$|PE$|SLURM_|_R_CHECK_)", names(Sys.getenv()), value = TRUE)
  inherited <- c(inherited, "R_TESTS")
  c(setNames(rep(NA_character_, length(inherited)), inherited), cluster$env,
    PATH = paste("/usr/lib/gridengine", Sys.getenv("PATH"), sep = ":"),
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep))
}

# Run a client command (`args[1]` is the program) with a timeout: list(status, stdout, stderr).
gridengine_cmd <- function(args, timeout = 30, cluster = gridengine_test_cluster()) {
  out <- tempfile()
  err <- tempfile()
  on.exit(unlink(c(out, err)), add = TRUE)
  status <- withr::with_envvar(gridengine_env(cluster),
    system2("timeout", c("-k", "2", timeout, shQuote(args)), stdout = out, stderr = err))
  list(status = status, stdout = readLines(out, warn = FALSE), stderr = readLines(err, warn = FALSE))
}

# Evaluate `expr` with Rscript in a qsub job of `slots` slots of PE smp (submitted with -V:
# the job has this run's environment, see gridengine_env()). The value comes back through
# a file; an error if the job fails or does not end within `timeout` seconds (it is then
# deleted).
gridengine_r <- function(expr, slots = 2L, timeout = 90, args = character(),
                         cluster = gridengine_test_cluster()) {
  result <- tempfile(fileext = ".rds")
  script <- tempfile(fileext = ".sh")
  log <- tempfile(fileext = ".log")
  on.exit(unlink(c(result, paste0(result, ".part"), script, log)), add = TRUE)
  code <- sprintf("saveRDS(local(%s), %s); file.rename(%s, %s)",
                  paste(deparse(expr), collapse = "\n"), deparse(paste0(result, ".part")),
                  deparse(paste0(result, ".part")), deparse(result))
  rscript <- file.path(R.home("bin"), "Rscript")
  writeLines(c("#!/bin/sh", paste(shQuote(c(rscript, "-e", code)), collapse = " ")), script)
  name <- sprintf("ptest%d", Sys.getpid())
  res <- gridengine_cmd(c("qsub", "-sync", "y", "-V", "-N", name, "-wd", tempdir(), "-o", log, "-j", "y",
                          "-pe", "smp", as.character(slots), args, script),
                        timeout = timeout, cluster = cluster)
  if (res$status == 124L) {
    job <- regmatches(res$stdout, regexpr("(?<=Your job )[0-9]+", res$stdout, perl = TRUE))
    if (length(job) == 1L) gridengine_cmd(c("qdel", job), cluster = cluster)
    stop(sprintf("qsub job %s timed out after %g s", paste(job, collapse = ""), timeout), call. = FALSE)
  }
  if (res$status != 0L || !file.exists(result)) {
    # What the daemons said (errors and warnings), to tell why.
    messages <- list.files(file.path(cluster$dir, "spool"), pattern = "^messages$", recursive = TRUE, full.names = TRUE)
    said <- unlist(lapply(messages, function(f) tail(grep("\\|[EWC]\\|", readLines(f, warn = FALSE), value = TRUE), 5L)))
    stop(sprintf("qsub job failed (exit status %d):\n%s\njob output:\n%s\ndaemons:\n%s", res$status,
                 paste(c(res$stdout, res$stderr), collapse = "\n"),
                 paste(if (file.exists(log)) readLines(log, warn = FALSE), collapse = "\n"),
                 paste(said, collapse = "\n")), call. = FALSE)
  }
  readRDS(result)
}

# The jobs the cluster knows of (any user), as "JOBID STATE" lines.
gridengine_jobs <- function(cluster = gridengine_test_cluster()) {
  res <- gridengine_cmd(c("qstat", "-u", "*"), timeout = 10, cluster = cluster)
  if (res$status != 0L) stop("qstat failed: ", paste(res$stderr, collapse = "\n"), call. = FALSE)
  lines <- res$stdout[grepl("^ *[0-9]+ ", res$stdout)]
  vapply(strsplit(trimws(lines), "[[:space:]]+"), function(f) paste(f[1], f[5]), "")
}
