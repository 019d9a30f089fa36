# A cluster of 8 workers on 4 Slurm nodes, inside one sbatch job: our "<srun>" node kind
# ("srun-kind": the default setup_strategy "auto", the batch host's workers local, each other
# node's two workers forked from one step; "srun-plain": setup_strategy = "parallel", one
# step per worker, started without a shell) against the recipe that works with an rshcmd
# function ("srun-recipe": `srun ... /bin/sh -c` per worker, revtunnel = FALSE, as the
# upstream development line documents it). The reference
# 1.34 cannot launch on Slurm at all (no function rshcmd; a character one passes the worker
# command to srun as one word). Interleaved and repeated, each in a job of its own on the
# real single-machine Slurm test cluster (tools/slurm-test-cluster.sh, started and stopped
# here). "srun-fork" is the kind with setup_strategy = "fork": one step per node runs a fork
# server and the node's workers are forked from it. Reports setup, isNodeAlive(), one
# parLapply() round and stopCluster(), medians with min-max, and the ratio kind/recipe.
#
#   Rscript bench/slurm-setup.R [--reps=3]
#
# Where the cluster cannot start (no root, no Slurm), it says why and exits with status 0.
local({
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
source(file.path(root, "bench", "scheduler-bench.R"), local = TRUE)
reps <- bench_reps()

missing <- c(Sys.which(c("slurmctld", "slurmd", "sbatch", "munged", "unshare")) == "")
if (any(missing) || Sys.info()[["user"]] != "root") {
  cat("slurm-setup: skipped (needs root and Slurm's daemons and clients:",
      paste(names(missing)[missing], collapse = ", "), ")\n")
  quit(status = 0L, save = "no")
}

port <- as.character(30000L + sample.int(90L, 1L) * 100L)
stop_cluster <- bench_cluster_start("slurm", file.path(root, "tools", "slurm-test-cluster.sh"),
  c(SLURM_TEST_CLUSTER_OWNER_PID = Sys.getpid(), SLURM_TEST_CLUSTER_PORT = port, USER = "root"))
on.exit(stop_cluster(), add = TRUE)
dir <- attr(stop_cluster, "dir")
Sys.setenv(SLURM_CONF = file.path(dir, "slurm.conf"), USER = "root")

# What runs in the job: the timings of one cluster, as a named numeric vector.
job_code <- function(impl, result) {
  bench_job_code(
    prelude = c('nodes <- system2("scontrol", c("show", "hostnames", Sys.getenv("SLURM_JOB_NODELIST")), stdout = TRUE)',
                "workers <- rep(nodes, each = 2L)"),
    setup = sprintf('cl <- if (%s == "srun-kind") makeClusterPSOCK(workers, rshcmd = "<srun>") else
      if (%s == "srun-plain") makeClusterPSOCK(workers, rshcmd = "<srun>", setup_strategy = "parallel") else
      if (%s == "srun-fork") makeClusterPSOCK(workers, rshcmd = "<srun>", setup_strategy = "fork") else
      makeClusterPSOCK(workers, rshcmd = function(rshopts, worker) sprintf("srun --nodes=1 --ntasks=1 --overlap -w %%s /bin/sh -c", worker),
                       revtunnel = FALSE, master = "127.0.0.1", homogeneous = TRUE)', deparse(impl), deparse(impl), deparse(impl)),
    result = result)
}

run_job <- function(impl, timeout = 180) {
  result <- tempfile(fileext = ".rds")
  job_script <- bench_job_script(job_code(impl, result))
  log <- tempfile(fileext = ".log")
  on.exit(unlink(c(result, job_script, log)))
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

bench_compare(c("srun-kind", "srun-plain", "srun-fork", "srun-recipe"), run_job, reps,
              "8 workers on 4 Slurm nodes in one sbatch job (the reference 1.34 cannot launch there)")
})
