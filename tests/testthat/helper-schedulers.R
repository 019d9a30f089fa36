# Environment variables of job schedulers and build machines that availableCores() and
# availableWorkers() read; tests unset them so that results do not depend on where they run.
scheduler_envvars <- c(
  "NSLOTS", "PE_HOSTFILE", "PBS_NUM_PPN", "NCPUS", "PBS_NODEFILE", "PBS_NP", "PBS_NUM_NODES",
  "SLURM_CPUS_PER_TASK", "SLURM_JOB_NUM_NODES", "SLURM_NNODES",
  "SLURM_CPUS_ON_NODE", "SLURM_TASKS_PER_NODE", "SLURM_JOB_NODELIST", "SLURM_JOB_CPUS_PER_NODE",
  "SLURM_NODELIST", "LSB_DJOB_NUMPROC", "LSB_HOSTS", "PJM_VNODE_CORE",
  "PJM_PROC_BY_NODE", "PJM_O_NODEINF", "BIOCPARALLEL_WORKER_NUMBER",
  "_R_CHECK_LIMIT_CORES_", "IS_BIOC_BUILD_MACHINE", "BBS_HOME"
)

# Unset the scheduler variables and the options `opts` for the calling test, pretend the
# machine has `system` cores, and forget availableCoresLSF()'s memoised count.
local_clean_scheduler_env <- function(opts, system = 8L, env = parent.frame()) {
  withr::local_envvar(setNames(rep(NA, length(scheduler_envvars)), scheduler_envvars),
                      .local_envir = env)
  opts <- setNames(vector("list", length(opts)), opts)
  opts$parallelly.availableCores.system <- system
  withr::local_options(opts, .local_envir = env)
  lsf <- environment(parallelly:::availableCoresLSF)
  lsf$n <- NULL
  withr::defer(lsf$n <- NULL, envir = env)
}

# A library directory without parallelly and an empty Renviron (Debian's site Renviron puts
# /usr/local/lib/R/site-library, where ours may be, first): what a worker's R needs in its
# environment to be unable to load our package. Removed when the calling test ends.
local_library_without_parallelly <- function(env = parent.frame()) {
  dir <- tempfile("no-parallelly-")
  dir.create(dir)
  withr::defer(unlink(dir, recursive = TRUE), envir = env)
  environ <- file.path(dir, "Renviron")
  file.create(environ)
  list(dir = dir, environ = environ)
}
