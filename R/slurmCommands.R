# Slurm client commands (scontrol, squeue, scancel) for the "<srun>" node kind
# (R/kind-srun.R): run without a shell, as children of ours, with a timeout; their output
# goes to a file (stdout and stderr), read once they end.

# Start a Slurm client command (argv, no shell); its output (stdout and stderr) goes to a
# file. Returns a handle for slurm_command_collect().
slurm_command <- function(args, timeout = 10) {
  out <- tempfile("parallelly-slurm-", fileext = ".out")
  res <- tryCatch(backend_launch(find_program(args[1L]), args[-1L], output = out),
                  parallellyError = function(e) e)
  list(args = args, out = out, pid = if (is.list(res)) as.integer(res$pid) else NA_integer_,
       error = if (inherits(res, "error")) conditionMessage(res), deadline = Sys.time() + timeout)
}

# Whether the command of `h` has ended (or could not start).
slurm_command_done <- function(h) {
  is.na(h$pid) || backend_child_state(h$pid)$state != "running"
}

# Wait for the command of `h` (until its deadline, or `wait` seconds if sooner) and return
# list(status, output); status NA when it did not finish in time (it is then killed) or
# could not be started.
slurm_command_collect <- function(h, wait = Inf) {
  on.exit(unlink(h$out), add = TRUE)
  if (is.na(h$pid)) return(list(status = NA_integer_, output = h$error))
  left <- min(wait, as.double(difftime(h$deadline, Sys.time(), units = "secs")))
  finished <- wait_until(function() slurm_command_done(h), timeout = max(left, 0), interval = 0.01)
  if (!finished) {
    try(backend_signal(h$pid, tools::SIGKILL), silent = TRUE)
    wait_until(function() slurm_command_done(h), timeout = 1, interval = 0.01)
  }
  st <- backend_child_state(h$pid)
  backend_forget_child(h$pid)
  output <- if (file.exists(h$out)) readLines(h$out, warn = FALSE) else character(0)
  status <- if (!finished) NA_integer_ else if (st$state == "exited") as.integer(st$status) else NA_integer_
  list(status = status, output = output)
}

slurm_run <- function(args, timeout = 10) slurm_command_collect(slurm_command(args, timeout))

# The job the master runs in; an error naming the argument when there is none.
srun_job_id <- function() {
  job <- Sys.getenv("SLURM_JOB_ID", "")
  if (!grepl("^[0-9]+$", job)) {
    stop_arg("rshcmd", "is \"<srun>\", which starts workers as steps of the Slurm job this R session runs in, but SLURM_JOB_ID is not set: run R inside an allocation (salloc or sbatch), or use another 'rshcmd'")
  }
  job
}

# The steps the controller knows of, from `scontrol -o show steps` lines (one per step,
# pending ones included, as "JOB.TBD"): data.frame(step, job, state, nodes, srun_host, srun_pid).
parse_slurm_steps <- function(lines) {
  field <- function(name) {
    m <- regmatches(lines, regexec(sprintf("(^| )%s=([^ ]*)", name), lines))
    vapply(m, function(x) if (length(x) == 3L) x[3L] else NA_character_, character(1))
  }
  lines <- lines[grepl("^StepId=", lines)]
  step <- field("StepId")
  srun <- field("SrunHost:Pid")
  data.frame(step = step, job = sub("\\..*$", "", step), state = field("State"),
             nodes = field("NodeList"),
             srun_host = sub(":[^:]*$", "", srun),
             srun_pid = suppressWarnings(as.integer(sub("^.*:", "", srun))),
             stringsAsFactors = FALSE)
}

slurm_steps <- function(job, timeout = 5) {
  res <- slurm_run(c("scontrol", "-o", "show", "step", job), timeout = timeout)
  if (!identical(res$status, 0L)) return(NULL)
  parse_slurm_steps(res$output)
}

short_host <- function(x) sub("[.].*$", "", x)

# Seconds left of a stage's budget (`left` is a function or a number).
stage_left <- function(left) as.double(if (is.function(left)) left() else left)

# A stage that waits for the Slurm command `h` without blocking, then answers `finish(res)`.
# Each call waits a short slice (the caller runs the stages of all groups in turn, without
# sleeping); the command's own deadline counts as well as the caller's, whose left() never
# drops below its 0.05 s floor.
slurm_stage <- function(h, finish) {
  stage <- function(left) {
    remaining <- min(stage_left(left), as.double(difftime(h$deadline, Sys.time(), units = "secs")))
    if (remaining > 0.05) wait_until(function() slurm_command_done(h), timeout = min(0.02, remaining - 0.05), interval = 0.005)
    if (slurm_command_done(h) || remaining <= 0.05) return(finish(slurm_command_collect(h, wait = 0)))
    stage
  }
  stage
}
