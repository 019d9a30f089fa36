# A cluster of 8 workers through qrsh inside one qsub job (PE smp, 8 slots): our "<qrsh>"
# node kind ("qrsh-kind": the default setup_strategy "auto", which forks the 8 workers from
# one task; "qrsh-plain": setup_strategy = "parallel", 8 tasks started together, each
# through a task script, no shell on our side but the one that hands qrsh its control FIFO)
# against the recipe with an rshcmd function ("qrsh-recipe": `qrsh -inherit -nostdin -V
# HOST` per worker, revtunnel = FALSE, one after the other as for any external client).
# The test cluster has one host, the
# master's own, which makeClusterPSOCK() would give local workers: both start their workers
# as if the host were another (attribute `localhost = FALSE`). Interleaved and repeated,
# each in a job of its own on the real single-machine Grid Engine test cluster
# (tools/gridengine-test-cluster.sh, started and stopped here). Reports setup,
# isNodeAlive(), one parLapply() round and stopCluster(), medians with min-max, and the
# ratio kind/recipe. "qrsh-fork" is the kind with setup_strategy = "fork": one task runs a
# fork server on the host and the 8 workers are forked from it.
#
#   Rscript bench/gridengine-setup.R [--reps=3]
#
# Where the cluster cannot start (no root, no Grid Engine), it says why and exits with status 0.
local({
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
source(file.path(root, "bench", "scheduler-bench.R"), local = TRUE)
reps <- bench_reps()

bins <- c(sge_qmaster = "/usr/sbin/sge_qmaster", sge_execd = "/usr/sbin/sge_execd", qsub = "/usr/lib/gridengine/qsub")
missing <- !file.exists(bins)
if (any(missing) || Sys.info()[["user"]] != "root" || !nzchar(Sys.which("unshare"))) {
  cat("gridengine-setup: skipped (needs root, unshare and Grid Engine's daemons and clients:",
      paste(names(bins)[missing], collapse = ", "), ")\n")
  quit(status = 0L, save = "no")
}

port <- as.character(40000L + sample.int(90L, 1L) * 100L)
stop_cluster <- bench_cluster_start("gridengine", file.path(root, "tools", "gridengine-test-cluster.sh"),
  c(GRIDENGINE_TEST_CLUSTER_OWNER_PID = Sys.getpid(), GRIDENGINE_TEST_CLUSTER_PORT = port))
on.exit(stop_cluster(), add = TRUE)
dir <- attr(stop_cluster, "dir")
for (line in sub("^export ", "", readLines(file.path(dir, "env.sh")))) {
  do.call(Sys.setenv, setNames(list(gsub("'", "", sub("^[^=]*=", "", line))), sub("=.*$", "", line)))
}
Sys.setenv(PATH = paste("/usr/lib/gridengine", Sys.getenv("PATH"), sep = ":"),
           R_LIBS = paste(.libPaths(), collapse = ":"))

# What runs in the job: the timings of one cluster, as a named numeric vector.
job_code <- function(impl, result) {
  bench_job_code(
    prelude = c('host <- structure(Sys.info()[["nodename"]], localhost = FALSE)', "port <- freePort()",
                'cluster <- function(nodes) structure(nodes, class = c("RichSOCKcluster", "SOCKcluster", "cluster"))'),
    setup = sprintf('cl <- if (%s %%in%% c("qrsh-kind", "qrsh-plain", "qrsh-fork")) {
      strategy <- switch(%s, "qrsh-fork" = "fork", "qrsh-plain" = "parallel", "auto")
      opts <- lapply(1:8, function(i) makeNodePSOCK(host, port = port, rshcmd = "<qrsh>", rank = i, setup_strategy = strategy, action = "options"))
      cluster(parallelly:::connect_workers(opts))
    } else {
      cluster(lapply(1:8, function(i) makeNodePSOCK(host, port = port, rank = i, revtunnel = FALSE, homogeneous = TRUE,
        rshcmd = function(rshopts, worker) sprintf("qrsh -inherit -nostdin -V %%s", worker))))
    }', deparse(impl), deparse(impl)),
    result = result)
}

run_job <- function(impl, timeout = 180) {
  result <- tempfile(fileext = ".rds")
  job_script <- bench_job_script(job_code(impl, result))
  log <- tempfile(fileext = ".log")
  on.exit(unlink(c(result, job_script, log)))
  res <- suppressWarnings(system2("timeout", c(timeout, "qsub", "-sync", "y", "-V", "-pe", "smp", "8", "-o", log, "-j", "y", job_script),
                                  stdout = TRUE, stderr = TRUE))
  if (!file.exists(result)) {
    cat(sprintf("gridengine-setup: %s job failed:\n%s\n%s\n", impl, paste(res, collapse = "\n"),
                paste(readLines(log, warn = FALSE), collapse = "\n")))
    return(NULL)
  }
  readRDS(result)
}

bench_compare(c("qrsh-kind", "qrsh-plain", "qrsh-fork", "qrsh-recipe"), run_job, reps, "8 workers through qrsh -inherit in one qsub job")
})
