# A cluster of 8 workers on 4 Slurm nodes, inside one sbatch job: our "<srun>" node kind
# ("srun-kind": steps started without a shell, the batch host's workers local) against the
# recipe that works with an rshcmd function ("srun-recipe": `srun ... /bin/sh -c` per
# worker, revtunnel = FALSE, as the upstream development line documents it). The reference
# 1.34 cannot launch on Slurm at all (no function rshcmd; a character one passes the worker
# command to srun as one word). Interleaved and repeated, each in a job of its own on the
# real single-machine Slurm test cluster (tools/slurm-test-cluster.sh, started and stopped
# here). Reports setup, isNodeAlive(), one parLapply() round and stopCluster(), medians
# with min-max, and the ratio kind/recipe.
#
#   Rscript bench/slurm-setup.R [--reps=3]
#
# Where the cluster cannot start (no root, no Slurm), it says why and exits with status 0.
local({
args <- commandArgs(TRUE)
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
reps <- as.integer(sub("^--reps=", "", c(grep("^--reps=", args, value = TRUE), "--reps=3")[1]))

missing <- c(Sys.which(c("slurmctld", "slurmd", "sbatch", "munged", "unshare")) == "")
if (any(missing) || Sys.info()[["user"]] != "root") {
  cat("slurm-setup: skipped (needs root and Slurm's daemons and clients:",
      paste(names(missing)[missing], collapse = ", "), ")\n")
  quit(status = 0L, save = "no")
}

dir <- tempfile("bench-slurm-")
port <- as.character(30000L + sample.int(90L, 1L) * 100L)
env <- c(SLURM_TEST_CLUSTER_OWNER_PID = Sys.getpid(), SLURM_TEST_CLUSTER_PORT = port, USER = "root")
withr_env <- function(code) {
  old <- Sys.getenv(names(env), unset = NA)
  do.call(Sys.setenv, as.list(env))
  on.exit(for (n in names(old)) if (is.na(old[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, setNames(list(old[[n]]), n)))
  code
}
script <- file.path(root, "tools", "slurm-test-cluster.sh")
out <- withr_env(suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir)), stdout = TRUE, stderr = TRUE)))
if (!is.null(attr(out, "status"))) {
  cat("slurm-setup: skipped (the Slurm test cluster did not start):\n", paste(out, collapse = "\n"), "\n")
  quit(status = 0L, save = "no")
}
on.exit(withr_env(system2("bash", c(shQuote(script), "stop", shQuote(dir)), stdout = FALSE, stderr = FALSE)), add = TRUE)
Sys.setenv(SLURM_CONF = file.path(dir, "slurm.conf"), USER = "root")

# What runs in the job: the timings of one cluster, as a named numeric vector.
job_code <- function(impl, result) {
  sprintf('
    suppressPackageStartupMessages(library(parallelly))
    stopifnot(packageVersion("parallelly") >= "2.0.0")
    nodes <- system2("scontrol", c("show", "hostnames", Sys.getenv("SLURM_JOB_NODELIST")), stdout = TRUE)
    workers <- rep(nodes, each = 2L)
    t <- function(expr) { t0 <- Sys.time(); force(expr); as.numeric(difftime(Sys.time(), t0, units = "secs")) }
    setup <- t(cl <- if (%s == "srun-kind") makeClusterPSOCK(workers, rshcmd = "<srun>") else
      makeClusterPSOCK(workers, rshcmd = function(rshopts, worker) sprintf("srun --nodes=1 --ntasks=1 --overlap -w %%s /bin/sh -c", worker),
                       revtunnel = FALSE, master = "127.0.0.1", homogeneous = TRUE))
    stopifnot(length(cl) == 8L)
    alive <- t(ok <- isNodeAlive(cl))
    round <- t(parallel::parLapply(cl, 1:8, sqrt))
    stop <- t(parallel::stopCluster(cl))
    saveRDS(c(setup = setup, isNodeAlive = alive, parLapply = round, stopCluster = stop), %s)',
    deparse(impl), deparse(result))
}

run_job <- function(impl, timeout = 180) {
  result <- tempfile(fileext = ".rds")
  job_script <- tempfile(fileext = ".sh")
  log <- tempfile(fileext = ".log")
  on.exit(unlink(c(result, job_script, log)))
  writeLines(c("#!/bin/sh", paste(shQuote(c(file.path(R.home("bin"), "Rscript"), "-e", job_code(impl, result))), collapse = " ")), job_script)
  job <- system2("sbatch", c("--parsable", "-p", "all", "-N4", "-n8", "-o", log, job_script), stdout = TRUE, stderr = TRUE)
  job <- sub(";.*", "", job[1])
  deadline <- Sys.time() + timeout
  repeat {
    queued <- suppressWarnings(system2("squeue", c("-h", "-j", job, "-o", "%i"), stdout = TRUE, stderr = FALSE))
    if (length(queued) == 0L && is.null(attr(queued, "status"))) break
    if (Sys.time() > deadline) { system2("scancel", job); break }
    Sys.sleep(0.1)
  }
  if (!file.exists(result)) {
    cat(sprintf("slurm-setup: %s job %s failed:\n%s\n", impl, job, paste(readLines(log, warn = FALSE), collapse = "\n")))
    return(NULL)
  }
  readRDS(result)
}

impls <- c("srun-kind", "srun-recipe")
runs <- list()
for (rep in seq_len(reps)) for (impl in impls) {
  value <- run_job(impl)
  if (!is.null(value)) runs[[length(runs) + 1L]] <- data.frame(impl = impl, measure = names(value), value = unname(value))
}
if (length(runs) == 0L) quit(status = 0L, save = "no")
runs <- do.call(rbind, runs)
cat(sprintf("\n8 workers on 4 Slurm nodes in one sbatch job (%d reps; the reference 1.34 cannot launch there)\n", reps))
cat(sprintf("%-12s %-28s %-28s %s\n", "measure", "srun-kind", "srun-recipe", "kind/recipe"))
for (m in unique(runs$measure)) {
  med <- function(impl) { x <- runs$value[runs$impl == impl & runs$measure == m]; if (length(x)) c(median(x), min(x), max(x)) else NA }
  o <- med("srun-kind"); r <- med("srun-recipe")
  cell <- function(x) if (anyNA(x)) "-" else sprintf("%.3f s (%.3f-%.3f)", x[1], x[2], x[3])
  cat(sprintf("%-12s %-28s %-28s %s\n", m, cell(o), cell(r), if (anyNA(r)) "-" else sprintf("%.2f", o[1] / r[1])))
}
})
