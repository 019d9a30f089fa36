# Helpers for tests against a real Slurm cluster on this machine (tools/slurm-test-cluster.sh):
# munged, slurmctld and five slurmd in a PID namespace of their own, with all files in a
# temporary directory. Nodes n1, n2 (4 CPUs, partition "big"), n3, n4, n5 (2 CPUs, partition
# "small", the default); partition "all" has every node.
#
#   cluster <- skip_if_no_slurm()                        # skip unless the cluster runs
#   slurm_cmd(c("squeue", "-h"))                         # a client command, with a timeout
#   slurm_r("salloc", c("-n1", "-c2"), quote(availableWorkers()))   # evaluate R in a job

# One cluster per test run; stopped at the end of the run (see slurm_test_cluster()).
.slurm_test_cluster_cache <- new.env(parent = emptyenv())

# The start/stop script: tools/ in the source tree, else wherever the env var says.
slurm_test_cluster_script <- function() {
  script <- tryCatch(testthat::test_path("..", "..", "tools", "slurm-test-cluster.sh"),
                     error = function(e) "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  script <- Sys.getenv("R_PARALLELLY_SLURM_TEST_CLUSTER_SCRIPT", "")
  if (nzchar(script) && file.exists(script)) return(normalizePath(script))
  ""
}

# Why the Slurm test cluster cannot run here, or "" if nothing is known to be missing.
slurm_test_cluster_missing <- function() {
  missing <- character()
  if (.Platform$OS.type != "unix") return("not a Unix machine")
  if (!identical(Sys.info()[["effective_user"]], "root"))
    missing <- c(missing, "not running as root")
  bins <- c(slurmctld = "/usr/sbin/slurmctld", slurmd = "/usr/sbin/slurmd",
            munge = "/usr/sbin/munged", `slurm-client` = "/usr/bin/salloc")
  absent <- !file.exists(bins)
  if (any(absent))
    missing <- c(missing, paste("not installed:", paste(names(bins)[absent], collapse = ", ")))
  if (!nzchar(Sys.which("unshare"))) missing <- c(missing, "unshare not found")
  if (!nzchar(slurm_test_cluster_script()))
    missing <- c(missing, paste("tools/slurm-test-cluster.sh not found",
                                "(set R_PARALLELLY_SLURM_TEST_CLUSTER_SCRIPT)"))
  paste(missing, collapse = "; ")
}

slurm_test_cluster_stop <- function() {
  cluster <- .slurm_test_cluster_cache$cluster
  rm(list = ls(.slurm_test_cluster_cache), envir = .slurm_test_cluster_cache)
  if (is.null(cluster)) return(invisible())
  out <- suppressWarnings(system2("bash", c(shQuote(cluster$script), "stop", shQuote(cluster$dir)),
                                  stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L)
    warning("stopping the Slurm test cluster failed:\n", paste(out, collapse = "\n"), call. = FALSE)
  invisible()
}

# Start the cluster (once per test run) and return list(dir, conf, nodes, port, script).
slurm_test_cluster <- function() {
  if (!is.null(.slurm_test_cluster_cache$error))
    stop(.slurm_test_cluster_cache$error, call. = FALSE)
  if (!is.null(.slurm_test_cluster_cache$cluster)) return(.slurm_test_cluster_cache$cluster)
  why <- slurm_test_cluster_missing()
  if (nzchar(why)) stop("Slurm test cluster unavailable: ", why, call. = FALSE)
  script <- slurm_test_cluster_script()
  dir <- tempfile("slurm-test-cluster-")
  # A port range of this run's own: slurmctld on PORT, slurmd nK on PORT + K, srun on
  # PORT + 100 ... PORT + 400.
  port <- Sys.getenv("SLURM_TEST_CLUSTER_PORT", "")
  if (!nzchar(port)) {
    # freePort() tries them in a random order without touching .Random.seed. Below the
    # kernel's ephemeral range (32768-60999 by default): a port there may be the local end of
    # any connection of the suite, and slurmd then fails to bind it (seen in CI); above the
    # masters' default ports (11000-11999), below the SSH test hosts' (22000-29999).
    candidates <- seq(14000L, 20500L, by = 500L)
    port <- as.character(parallelly::freePort(candidates, default = candidates[1]))
  }
  out <- withr::with_envvar(c(SLURM_TEST_CLUSTER_OWNER_PID = Sys.getpid(),
                              SLURM_TEST_CLUSTER_PORT = port, USER = "root"),
    suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir)),
                             stdout = TRUE, stderr = TRUE)))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L) {
    msg <- paste0("starting the Slurm test cluster failed (exit status ", status, "):\n",
                  paste(out, collapse = "\n"))
    .slurm_test_cluster_cache$error <- msg  # do not retry in every test
    unlink(dir, recursive = TRUE)
    stop(msg, call. = FALSE)
  }
  dir <- normalizePath(dir)
  cluster <- list(
    dir = dir,
    conf = file.path(dir, "slurm.conf"),
    nodes = utils::read.delim(file.path(dir, "nodes.tsv"), colClasses = c("character",
                              "character", "integer", "integer", "character")),
    port = as.integer(port),
    script = script,
    started = out
  )
  .slurm_test_cluster_cache$cluster <- cluster
  registered <- tryCatch({
    withr::defer(slurm_test_cluster_stop(), envir = testthat::teardown_env())
    TRUE
  }, error = function(e) FALSE)
  if (!registered) reg.finalizer(.slurm_test_cluster_cache, function(e) slurm_test_cluster_stop(),
                                 onexit = TRUE)
  cluster
}

# Skip unless the Slurm test cluster runs; returns it (see slurm_test_cluster()) invisibly.
skip_if_no_slurm <- function() {
  why <- slurm_test_cluster_missing()
  if (nzchar(why)) skip_unavailable("Slurm test cluster", why)
  cluster <- tryCatch(slurm_test_cluster(), error = function(e) e)
  if (inherits(cluster, "error")) skip_unavailable("Slurm test cluster", conditionMessage(cluster))
  invisible(cluster)
}

# The environment of the client commands: the cluster's config, a user name (salloc and
# batchtools need one), the library paths of this run (so that jobs load the package under
# test), and no scheduler variables of an enclosing job.
slurm_env <- function(cluster = slurm_test_cluster()) {
  inherited <- grep("^(SLURM_|SBATCH_|SALLOC_|SRUN_)", names(Sys.getenv()), value = TRUE)
  # R_TESTS (set by R CMD check) names a start-up file relative to the tests directory.
  inherited <- c(inherited, "R_TESTS")
  c(setNames(rep(NA_character_, length(inherited)), inherited),
    SLURM_CONF = cluster$conf, USER = "root",
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep))
}

# Run a client command (`args[1]` is the program) with a timeout; returns list(status,
# stdout, stderr) (status 124: timed out).
slurm_cmd <- function(args, timeout = 30, cluster = slurm_test_cluster()) {
  out <- tempfile()
  err <- tempfile()
  on.exit(unlink(c(out, err)), add = TRUE)
  status <- withr::with_envvar(slurm_env(cluster),
    system2("timeout", c("-k", "2", timeout, shQuote(args)), stdout = out, stderr = err))
  list(status = status, stdout = readLines(out, warn = FALSE),
       stderr = readLines(err, warn = FALSE))
}

# Evaluate `expr` with Rscript in a job: `launcher` is "salloc" (the allocation's shell
# command, run here), "sbatch" (the batch script, run on the first node) or "srun"
# (a job step; `args` may also be c(<salloc options>, "--", <srun options>) to run the step
# inside an allocation of its own). The value is passed back by saveRDS() through a file;
# an error if the job fails or times out.
slurm_r <- function(launcher, args, expr, timeout = 60, cluster = slurm_test_cluster()) {
  result <- tempfile(fileext = ".rds")
  on.exit(unlink(c(result, paste0(result, ".part"))), add = TRUE)
  # Written under another name, then renamed: a reader never sees half a file.
  # The job's R runs as a user's batch script would, also when the suite runs under R CMD
  # check: not limited to check's 2 cores (availableWorkers() would drop the other nodes).
  code <- sprintf("Sys.unsetenv(c('_R_CHECK_LIMIT_CORES_', '_R_CHECK_PACKAGE_NAME_')); saveRDS(local(%s), %s); file.rename(%s, %s)",
                  paste(deparse(expr), collapse = "\n"), deparse(paste0(result, ".part")),
                  deparse(paste0(result, ".part")), deparse(result))
  rscript <- file.path(R.home("bin"), "Rscript")
  cmd <- switch(launcher,
    salloc = c("salloc", "-Q", args, rscript, "-e", code),
    srun = {
      cut <- match("--", args)
      if (is.na(cut)) c("srun", "-Q", args, rscript, "-e", code)
      else c("salloc", "-Q", args[seq_len(cut - 1L)], "srun", "-Q",
             args[-seq_len(cut)], rscript, "-e", code)
    },
    sbatch = {
      # Not --wait, which polls the controller at growing intervals (up to 10 s here).
      script <- tempfile(fileext = ".sh")
      on.exit(unlink(script), add = TRUE)
      writeLines(c("#!/bin/sh", paste(shQuote(c(rscript, "-e", code)), collapse = " ")), script)
      log <- tempfile(fileext = ".log")
      on.exit(unlink(log), add = TRUE)
      res <- slurm_cmd(c("sbatch", "--parsable", "-o", log, args, script), cluster = cluster)
      job <- sub(";.*", "", res$stdout[1])
      if (res$status != 0L || !grepl("^[0-9]+$", job))
        stop("sbatch failed: ", paste(c(res$stdout, res$stderr), collapse = "\n"), call. = FALSE)
      deadline <- Sys.time() + timeout
      repeat {
        res <- slurm_cmd(c("squeue", "-h", "-j", job, "-o", "%i"), timeout = 10, cluster = cluster)
        # A controller that does not answer (status 124) says nothing about the job.
        if (res$status == 0L && length(res$stdout) == 0L) break
        if (Sys.time() > deadline) {
          slurm_cmd(c("scancel", job), cluster = cluster)
          stop(sprintf("sbatch job %s timed out after %g s", job, timeout), call. = FALSE)
        }
        Sys.sleep(0.1)
      }
      if (!file.exists(result))
        stop(sprintf("sbatch job %s failed:\n%s", job,
                     paste(readLines(log, warn = FALSE), collapse = "\n")), call. = FALSE)
      return(readRDS(result))
    },
    stop("unknown launcher ", launcher)
  )
  res <- slurm_cmd(cmd, timeout = timeout, cluster = cluster)
  if (res$status != 0L || !file.exists(result)) {
    stop(sprintf("%s %s failed (exit status %d):\n%s", launcher, paste(args, collapse = " "),
                 res$status, paste(c(res$stdout, res$stderr), collapse = "\n")), call. = FALSE)
  }
  readRDS(result)
}

# "n1 x2, n2 x1" for a vector of hostnames (for readable expectations).
slurm_tally <- function(hosts) {
  if (length(hosts) == 0L) return("")
  runs <- rle(hosts)
  paste(sprintf("%s x%d", runs$values, runs$lengths), collapse = ", ")
}

# Jobs the cluster knows of (pending or running), as squeue lists them.
slurm_jobs <- function(cluster = slurm_test_cluster()) {
  res <- slurm_cmd(c("squeue", "-h", "-o", "%i %T"), timeout = 10, cluster = cluster)
  if (res$status != 0L) stop("squeue failed: ", paste(res$stderr, collapse = "\n"), call. = FALSE)
  res$stdout
}
