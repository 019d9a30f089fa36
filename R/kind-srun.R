# The "<srun>" node kind: workers started as Slurm job steps of the allocation the master
# runs in (makeClusterPSOCK(availableWorkers(), rshcmd = "<srun>")).
#
# Each worker is one step, `srun --nodes=1 --ntasks=1 --overlap -w HOST Rscript ...`, spawned
# by the Rust backend without a shell: the srun process is our child, and killing it ends
# its step. One step per worker (not one k-task step per host) because Slurm signals whole
# steps only: killNode() of one worker must not take its neighbours. `--overlap` lets the
# step share the job's CPUs on that node with every other step (the master's own, and the
# other workers'), so that k workers fit on a node whatever its CPU count; a step without it
# waits for free CPUs ("step creation temporarily disabled"), forever: that state is seen
# in `scontrol show steps` and becomes an immediate error.
#
# After launch a worker is known by its step id (JOB.STEP). Probes and signals ask the
# controller (squeue, scancel --signal) and never start a step: creating one can block, and
# a node's own tools are out of reach without one. Slurm client commands run without a
# shell, with a timeout, as children of ours (R/slurmCommands.R).

srun_cache <- function() kind_table("srun", "master")

# The master's address as the allocation's nodes reach it: the NodeAddr of the node it runs
# on (inside a batch script or step), else this machine's name (salloc on a login node).
srun_master_address <- function() {
  node <- Sys.getenv("SLURMD_NODENAME", "")
  key <- paste(Sys.getenv("SLURM_JOB_ID"), node)
  cache <- srun_cache()
  if (identical(cache$master_key, key)) return(cache$master)
  cache$master_key <- key
  cache$master <- srun_lookup_master(node)
}

srun_lookup_master <- function(node) {
  if (nzchar(node)) {
    res <- slurm_run(c("scontrol", "-o", "show", "node", node), timeout = 5)
    addr <- regmatches(res$output, regexpr("NodeAddr=[^ ]+", res$output))
    if (identical(res$status, 0L) && length(addr) == 1L) return(sub("^NodeAddr=", "", addr))
  }
  Sys.info()[["nodename"]]
}

# Whether `worker` is the node the master runs on: its workers are started as local ones.
srun_is_batch_host <- function(worker) {
  node <- Sys.getenv("SLURMD_NODENAME", "")
  nzchar(node) && identical(as.character(worker), node)
}

# A remote worker's options: a job step has no reverse tunnel, and needs an allocation (not
# for a dry run); the master is where the allocation's nodes reach it.
srun_reachability <- function(revtunnel, master, dryrun) {
  if (revtunnel) {
    stop_arg("revtunnel", "must be FALSE or NA with rshcmd = \"<srun>\": a Slurm job step has no reverse tunnel, its worker connects to the master directly (see argument 'master')")
  }
  if (!dryrun) srun_job_id()
  if (is.null(master)) srun_master_address() else master
}

# srun options from `rshopts`: given ones first; --overlap unless the user asks for CPUs of
# the step's own (--exact/--exclusive), which then makes more workers than CPUs an error.
srun_options <- function(rshopts) {
  opts <- unlist(strsplit(paste(rshopts, collapse = " "), "[[:space:]]+"))
  opts <- opts[nzchar(opts)]
  own_cpus <- any(grepl("^--(exact|exclusive)", opts))
  c(if (!own_cpus) "--overlap", opts)
}

# The argument vector of the srun process that runs one worker as a step on its host.
srun_worker_argv <- function(opts, port, name) {
  spec <- worker_launch_spec(opts, port)
  c("--nodes=1", "--ntasks=1", "--export=ALL", paste0("--job-name=", name),
    srun_options(opts$rshopts), "-w", as.character(opts$worker), spec$program, spec$args)
}

# ---- launch -------------------------------------------------------------------------

srun_launcher <- function(opts) {
  job <- srun_job_id()
  list(
    kind = "srun",
    remote = TRUE,
    ssh_key = NULL,
    submit = function(options_list, port, launched) srun_submit(options_list, port, launched, job),
    launch = function(options_list, port, launched) {
      launcher_wait(srun_submit(options_list, port, launched, job), opts$connectTimeout + 5,
                    as.character(opts$worker), "starting job steps")
    },
    # srun is our child: it ends with its step.
    check = function(launched, waiting) {
      first_exited_child(launched, waiting, function(state, status, signal, i) srun_exit_how(state, status, signal, launched$log[i]))
    },
    start_time = function(pid) NA_real_,
    connected = function(nodes) invisible()
  )
}

# Start one srun per worker, then poll until each step runs (so that its id is known before
# the worker connects); fail at once when a step waits for CPUs or srun gives up. The poll
# (R/setupHosts.R's "launching" stage) never blocks: one `scontrol show step` at a time
# runs as a child of ours and is collected when it has ended, so that the steps of every
# node of the allocation start together. Its `cancel` stops the sruns and their steps.
srun_submit <- function(options_list, port, launched, job, pending_grace = 2, step_timeout = 30) {
  srun <- find_program("srun")
  launched$step <- NA_character_
  launched$step_start <- NA_real_
  # Step names for people reading squeue (master PID, worker rank); steps are matched by
  # their srun's PID, and the token stays out of sight.
  names <- sprintf("parallelly-%d-%d", Sys.getpid(), vapply(options_list, function(o) as.integer(o$rank), 1L))
  query <- NULL  # the scontrol in flight
  last_query <- Sys.time() - 1
  cancel <- function() {
    if (!is.null(query)) slurm_command_collect(query, wait = 0)
    query <<- NULL
    srun_stop_steps(launched$pid, launched$step, launched$log, job)
  }
  # connect_workers() only learns of the sruns once the poll answers: on failure they (and
  # any step already created) are stopped here, srun itself, never a shell.
  failing <- function(expr) withCallingHandlers(expr, error = function(e) cancel())
  failing(for (i in seq_along(options_list)) {
    o <- options_list[[i]]
    spec <- worker_launch_spec(o, port)
    log <- tempfile("parallelly-srun-", fileext = ".log")
    launched$log[i] <- log
    res <- tryCatch(
      backend_launch(srun, srun_worker_argv(o, port, names[i]),
                     env = c(spec$env, R_PARALLELLY_WORKER_TOKEN = launched$token[i]),
                     unset = spec$unset, output = log),
      parallellyError = function(e) e)
    if (inherits(res, "error")) {
      stopf("Launch", "Failed to start srun for R worker #%d on Slurm node '%s': %s. Is Slurm's srun on the PATH ('%s')?",
            o$rank, o$worker, conditionMessage(res), srun, extra_class = "PSOCKConnectionError",
            fields = list(host = as.character(o$worker), rank = o$rank))
    }
    launched$pid[i] <- as.integer(res$pid)
  })
  wait <- min(step_timeout, max(options_list[[1L]]$connectTimeout, 1))
  deadline <- Sys.time() + wait
  first_pending <- rep(as.POSIXct(NA), nrow(launched))
  poll <- function() {
    todo <- which(is.na(launched$step))
    if (length(todo) == 0L) return(launched)
    st <- backend_child_state(launched$pid[todo])
    gone <- which(st$state != "running")
    if (length(gone) > 0L) {
      k <- todo[gone[1L]]
      srun_fail_launch(options_list[[k]], launched[k, ], job,
                       srun_exit_how(st$state[gone[1L]], st$status[gone[1L]], st$signal[gone[1L]], launched$log[k]))
    }
    if (is.null(query)) {
      # At most one query every 30 ms per launch (as the blocking loop before it slept).
      if (Sys.time() - last_query < 0.03) return(NULL)
      last_query <<- Sys.time()
      left <- as.double(difftime(deadline, Sys.time(), units = "secs"))
      query <<- slurm_command(c("scontrol", "-o", "show", "step", job), timeout = max(min(5, left), 0.5))
    } else if (slurm_command_done(query) || Sys.time() >= query$deadline) {
      res <- slurm_command_collect(query, wait = 0)
      query <<- NULL
      steps <- if (identical(res$status, 0L)) parse_slurm_steps(res$output)
      if (!is.null(steps)) {
        ours <- steps[steps$job == job & short_host(steps$srun_host) == short_host(Sys.info()[["nodename"]]), , drop = FALSE]
        for (k in todo) {
          row <- ours[ours$srun_pid %in% launched$pid[k], , drop = FALSE]
          if (nrow(row) == 0L) next
          if (identical(row$state[1L], "RUNNING")) {
            launched$step[k] <<- row$step[1L]
            launched$step_start[k] <<- as.numeric(Sys.time())
          } else if (identical(row$state[1L], "PENDING")) {
            if (is.na(first_pending[k])) first_pending[k] <<- Sys.time()
            if (difftime(Sys.time(), first_pending[k], units = "secs") > pending_grace) {
              srun_fail_shortage(options_list[[k]], launched[k, ], job)
            }
          }
        }
        if (!anyNA(launched$step)) return(launched)
      }
    }
    if (Sys.time() > deadline && anyNA(launched$step)) {
      k <- which(is.na(launched$step))[1L]
      o <- options_list[[k]]
      stopf("Timeout", "Slurm did not start the job step of R worker #%d on node '%s' (job %s) within %.1f seconds; srun (PID %d) was stopped.%s",
            o$rank, o$worker, job, wait, launched$pid[k], format_output(log_tail(launched$log[k]), list(outfile = NULL)),
            extra_class = "PSOCKConnectionError", fields = list(host = as.character(o$worker), pid = launched$pid[k], job = job))
    }
    NULL
  }
  structure(function() failing(poll()), cancel = cancel)
}

# How an srun that ended took its worker with it: srun's status is the task's, and srun
# says in its output whether the task was killed by a signal ("task 0: Killed").
srun_exit_how <- function(state, status, signal, log) {
  said <- grep("task [0-9]+: ", log_tail(log, 20L), value = TRUE)
  said <- sub("^.*task [0-9]+: ", "", said)
  if (length(said) > 0L && !grepl("^Exited with exit code", said[1L])) {
    return(sprintf("ended (its job step: %s)", said[1L]))
  }
  describe_exit(state, status, signal)
}

srun_fail_launch <- function(opts, launched, job, how) {
  output <- log_tail(launched$log)
  hint <- ""
  if (any(grepl("Requested node configuration is not available|not in the allocation|Invalid node name", output))) {
    hint <- sprintf(" Node '%s' is not part of job %s (SLURM_JOB_NODELIST=%s): give only the nodes of the allocation, e.g. workers = availableWorkers().",
                    opts$worker, job, Sys.getenv("SLURM_JOB_NODELIST"))
  } else if (any(grepl("More processors requested than permitted", output))) {
    hint <- sprintf(" The step asks for more CPUs than job %s has on node '%s' (check 'rshopts').", job, opts$worker)
  }
  stopf("Launch", "Failed to launch R worker #%d as a job step on Slurm node '%s' (job %s): srun (PID %d) %s before its worker connected.%s%s",
        opts$rank, opts$worker, job, launched$pid, how, hint, format_output(output, list(outfile = NULL)),
        extra_class = "PSOCKConnectionError",
        fields = list(host = as.character(opts$worker), pid = launched$pid, rank = opts$rank, job = job, output = output))
}

srun_fail_shortage <- function(opts, launched, job) {
  stopf("Launch", "Cannot launch R worker #%d on Slurm node '%s': job %s has no free CPU there for another job step (Slurm keeps the step pending, 'step creation temporarily disabled', until other steps end). Start fewer workers on that node, drop '--exact'/'--exclusive' from 'rshopts' (without them the steps share the job's CPUs), or ask for more CPUs (e.g. salloc/sbatch --ntasks).",
        opts$rank, opts$worker, job, extra_class = "PSOCKConnectionError",
        fields = list(host = as.character(opts$worker), rank = opts$rank, job = job, pid = launched$pid))
}

# Stop the srun processes of steps (a failed setup, or workers that did not exit after DONE).
# The sruns go first: a pending one could otherwise get its step the moment a cancelled step
# frees its CPUs. SIGTERM makes srun end its step; a step that outlived its srun (killed after
# the grace) is cancelled through the controller: the known ones, and any step one of these
# sruns created after the last look at the controller.
srun_stop_steps <- function(pids, steps, logs, job = Sys.getenv("SLURM_JOB_ID"), timeout = 5) {
  pids <- pids[!is.na(pids)]
  terminate_processes(pids)
  steps <- steps[!is.na(steps)]
  left <- if (length(pids) > 0L && nzchar(job)) slurm_steps(job, timeout)
  if (!is.null(left)) {
    ours <- left$srun_pid %in% pids & short_host(left$srun_host) == short_host(Sys.info()[["nodename"]])
    steps <- intersect(union(steps, left$step[ours & grepl("[.][0-9]+$", left$step)]), left$step)
  }
  if (length(steps) > 0L) slurm_run(c("scancel", steps), timeout = timeout)
  remove_logs(logs)
  invisible()
}

# ---- the node kind --------------------------------------------------------------------

srun_step_of <- function(id) {
  step <- id$process$step
  if (is.character(step) && length(step) == 1L && !is.na(step)) step else NA_character_
}


# Whether each worker's srun (our child) runs: FALSE once it ended, which ends its step; NA
# when the backend does not know it (then only the controller can tell).
srun_running <- function(ids) {
  pids <- vapply(ids, function(id) as.integer(if (is.null(id$launcher_pid)) NA else id$launcher_pid), integer(1))
  state <- backend_child_state(pids)$state
  ifelse(state == "unknown", NA, state == "running")
}

# The running steps of `ids` as the controller lists them: TRUE/FALSE per id, NA if squeue
# failed (then FALSE where our srun has ended, which ends its step).
srun_listed <- function(ids, res, running) {
  steps <- vapply(ids, srun_step_of, character(1))
  if (!identical(res$status, 0L)) {
    # The generic code turns this into a warning and NA for the group.
    why <- if (is.na(res$status)) "did not answer in time" else sprintf("failed (exit status %d)", res$status)
    stopf("Timeout", "Slurm's squeue %s: cannot tell whether the job steps %s still run. Check the Slurm controller (scontrol ping).%s",
          why, paste(steps[!is.na(steps)], collapse = ", "), format_output(utils::tail(res$output, 3L), list(outfile = NULL)),
          fields = list(host = ids[[1L]]$host, steps = steps))
  }
  listed <- trimws(res$output)
  # A step still listed while it completes has ended for us once its srun did.
  steps %in% listed & !is.na(steps) & !(running %in% FALSE)
}

srun_squeue <- function(ids, timeout) {
  jobs <- unique(sub("[.].*$", "", Filter(Negate(is.na), vapply(ids, srun_step_of, character(1)))))
  if (length(jobs) == 0L) jobs <- srun_job_id()
  slurm_command(c("squeue", "-h", "-s", "-j", paste(jobs, collapse = ","), "-o", "%i"), timeout = timeout)
}

srun_timeout <- function(timeout) if (is.numeric(timeout) && timeout > 0) timeout else 10

srun_probe <- function(ids, timeout = 0) {
  running <- srun_running(ids)
  if (all(running %in% FALSE)) return(rep(FALSE, length(ids)))
  slurm_stage(srun_squeue(ids, srun_timeout(timeout)), function(res) srun_listed(ids, res, running))
}

# scancel's exit status says nothing here (22.05 reports "Invalid job id" for a step it did
# signal, and success for one that is gone): a step is signalled if squeue listed it.
srun_signal <- function(ids, signal, timeout = 0) {
  timeout <- srun_timeout(timeout)
  deadline <- Sys.time() + timeout
  running <- srun_running(ids)
  if (all(running %in% FALSE)) return(rep(FALSE, length(ids)))
  slurm_stage(srun_squeue(ids, timeout), function(res) {
    present <- srun_listed(ids, res, running)
    if (!any(present %in% TRUE)) return(present)
    steps <- vapply(ids[present %in% TRUE], srun_step_of, character(1))
    left <- max(as.double(difftime(deadline, Sys.time(), units = "secs")), 0.5)
    h <- slurm_command(c("scancel", paste0("--signal=", as.integer(signal)), steps), timeout = left)
    slurm_stage(h, function(sent) {
      ok <- !is.na(sent$status)
      ifelse(present %in% TRUE, ok, present)
    })
  })
}

srun_stop <- function(ids, background = FALSE, grace = 5) {
  pids <- vapply(ids, function(id) as.integer(if (is.null(id$launcher_pid)) NA else id$launcher_pid), integer(1))
  steps <- vapply(ids, srun_step_of, character(1))
  logs <- unlist(lapply(ids, function(id) id$log))
  pids <- pids[!is.na(pids)]
  ours <- pids[backend_child_state(pids)$state != "unknown"]
  if (background && length(ours) > 0L) {
    # SIGTERM to an srun still running after 5 s makes it end its step.
    backend_stop_in_background(ours, grace = 5, term_grace = 1)
    remove_logs(logs)
  } else {
    gone <- wait_until(function() !any(backend_child_state(ours)$state == "running"), timeout = grace)
    if (gone) {
      for (pid in ours) backend_forget_child(pid)
      remove_logs(logs)
    } else {
      srun_stop_steps(ours, steps[srun_running(ids) %in% TRUE], logs)
    }
  }
  srun_remove_leftovers(unique(vapply(ids, function(id) as.character(id$host), character(1))))
  invisible()
}

# Remove the temporary directories that killed workers left on `hosts` (task_after_kill()):
# one short step per host, in the background.
srun_describe <- function(id) {
  step <- srun_step_of(id)
  if (is.na(step)) NA_character_ else sprintf("Slurm job step %s", step)
}

srun_remove_leftovers <- function(hosts) {
  task_remove_leftovers("srun", hosts, "SLURM_JOB_ID", grace = 10, argv = function(host, dirs) {
    c(find_program("srun"), "--nodes=1", "--ntasks=1", "--overlap", "-w", host, "rm", "-rf", "--", dirs)
  })
}

node_kind_srun <- list(
  name = "srun",
  # Before the local, ssh and rsh kinds (50+): rshcmd = "<srun>" is this kind's.
  priority = 10,
  claims = function(opts) identical(opts$rshcmd, "<srun>") && !isTRUE(attr(opts$worker, "localhost")),
  launcher = function(opts) srun_launcher(opts),
  rshcmd = "<srun>",
  job_variable = "SLURM_JOB_ID",
  worker_is_local = srun_is_batch_host,
  reachability = srun_reachability,
  # With "auto", a node's workers are forked (one step runs the node's fork server,
  # R/kind-fork.R) when it gets two or more; a single worker is one plain step, as a server
  # costs a step and an R start-up before its first fork.
  fork_pays = function(n) n >= 2L,
  launch_line = function(opts) {
    paste(c("srun", "--nodes=1", "--ntasks=1", srun_options(opts$rshopts), "-w", as.character(opts$worker)), collapse = " ")
  },
  # All steps of a job start in one setup batch, whatever their nodes (8 workers on 4 nodes:
  # ~2.4-3.6 s instead of ~4.0-4.3 s, loaded); forked workers ("fork", or "auto"), one batch
  # per node (each node's fork server forks that node's workers).
  batch = function(opts) {
    job <- Sys.getenv("SLURM_JOB_ID")
    if (identical(opts$setup_strategy, "fork")) paste0(job, ":", as.character(opts$worker)) else job
  },
  # The answers come from the controller (squeue), not from this machine's process table.
  answers_locally = function(id) FALSE,
  group = function(id) {
    step <- srun_step_of(id)
    paste0("srun:", if (is.na(step)) "" else sub("[.].*$", "", step))
  },
  probe = srun_probe,
  signal = srun_signal,
  stop = srun_stop,
  # srun ends with its task's status, 128 + N for signal N.
  exit_cause = function(ids) task_exit_causes(ids, "srun", srun_describe),
  usage = function(ids, timeout) task_usage(ids, "step_start"),
  last_output = function(id, n = 10L) log_tail(if (is.null(id$log)) NA_character_ else id$log, n),
  after_kill = function(id) task_after_kill("srun", id),
  describe = srun_describe
)
