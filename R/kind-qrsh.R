# The "<qrsh>" node kind: workers started as tasks of the Grid Engine job the master runs in
# (makeClusterPSOCK(availableWorkers(), rshcmd = "<qrsh>") inside `qsub -pe NAME SLOTS`),
# through `qrsh -inherit -V HOST`, which the job's parallel environment allows when it has
# `control_slaves TRUE`. Workers on the master's own host are local ones.
#
# Each worker is one task: a qrsh process, our child, spawned by the Rust backend (through
# /bin/sh only to give it its control FIFO as stdin, then replaced by qrsh). qrsh runs the
# task's command through the user's login shell on the host; what it runs is a short sh
# script (R/gridengineCommands.R) that runs the worker, ends normally with its status, and
# passes on signals written to the FIFO. Never is a qrsh signalled while its job should
# live on: Grid Engine (8.1.9, measured) ends the whole job, master included, when a task
# dies by a signal, and ending qrsh does that to its task.
#
# Probes are local: qrsh ends with its task, and the backend knows whether its child runs.
# Signals go through the FIFO; a second qrsh to the host is never started for them (the job
# may have no slot left there: Grid Engine refuses more tasks on a host than its slots).

qrsh_reachability <- function(revtunnel, master, dryrun) {
  if (revtunnel) {
    stop_arg("revtunnel", "must be FALSE or NA with rshcmd = \"<qrsh>\": a Grid Engine task has no reverse tunnel, its worker connects to the master directly (see argument 'master')")
  }
  if (!dryrun) qrsh_job_id()
  if (is.null(master)) Sys.info()[["nodename"]] else master
}

# ---- launch -------------------------------------------------------------------------

qrsh_launcher <- function(opts) {
  job <- qrsh_job_id()
  list(
    kind = "qrsh",
    remote = TRUE,
    ssh_key = NULL,
    launch = function(options_list, port, launched) qrsh_launch(options_list, port, launched, job),
    check = function(launched, waiting) {
      first_exited_child(launched, waiting, function(state, status, signal, i) qrsh_exit_how(state, status, signal, launched$log[i]))
    },
    start_time = function(pid) NA_real_,
    connected = function(nodes) invisible()
  )
}

qrsh_launch <- function(options_list, port, launched, job) {
  qrsh <- qrsh_program()
  launched$control <- NA_character_
  launched$task_start <- NA_real_
  launched$job <- job
  done <- FALSE
  on.exit(if (!done) qrsh_stop_tasks(launched$pid, launched$control, launched$log))
  for (i in seq_along(options_list)) {
    o <- options_list[[i]]
    command <- login_shell_command(qrsh_task_script(worker_command_line(o, port)))
    launched$log[i] <- tempfile("parallelly-qrsh-", fileext = ".log")
    launched$control[i] <- tempfile("parallelly-qrsh-", fileext = ".fifo")
    res <- tryCatch(
      backend_launch("/bin/sh", qrsh_task_argv(qrsh, launched$control[i], as.character(o$worker), command),
                     env = c(R_PARALLELLY_WORKER_TOKEN = launched$token[i]), output = launched$log[i]),
      parallellyError = function(e) e)
    if (inherits(res, "error")) {
      stopf("Launch", "Failed to start qrsh for R worker #%d on Grid Engine host '%s': %s. Is Grid Engine's qrsh on the PATH ('%s')?",
            o$rank, o$worker, conditionMessage(res), qrsh, extra_class = "PSOCKConnectionError",
            fields = list(host = as.character(o$worker), rank = o$rank))
    }
    launched$pid[i] <- as.integer(res$pid)
    launched$task_start[i] <- as.numeric(Sys.time())
  }
  done <- TRUE
  launched
}

# How a qrsh that ended took its worker with it, with what Grid Engine said.
qrsh_exit_how <- function(state, status, signal, log) {
  output <- log_tail(log, 20L)
  if (any(grepl("didn't accept task", output, fixed = TRUE))) {
    return(sprintf("%s: Grid Engine refused the task (the job has no free slot left on that host; start at most as many workers on a host as the job has slots there, e.g. workers = availableWorkers())",
                   describe_exit(state, status, signal)))
  }
  if (identical(state, "exited") && !is.na(status) && status > 128L && status <= 192L) {
    return(sprintf("ended: its worker was killed by signal %d (%s)", status - 128L, signal_name(status - 128L)))
  }
  describe_exit(state, status, signal)
}

# Stop tasks whose workers did not end by themselves: SIGTERM, then SIGKILL to the workers
# through their FIFOs; qrsh itself is only ended when that did not work (which, as a task
# that dies by a signal, ends the job). The FIFOs and logs are removed.
qrsh_stop_tasks <- function(pids, fifos, logs, grace = 1) {
  keep <- !is.na(pids)
  pids <- pids[keep]
  fifos_alive <- fifos[keep]
  running <- function() backend_child_state(pids)$state == "running"
  if (length(pids) > 0L) {
    for (sig in c(tools::SIGTERM, tools::SIGKILL)) {
      k <- which(running())
      if (length(k) == 0L) break
      for (i in k) qrsh_send_signal(fifos_alive[i], sig)
      wait_until(function() !any(running()), timeout = grace)
    }
    terminate_processes(pids)
  }
  fifos <- fifos[!is.na(fifos)]
  if (length(fifos) > 0L) unlink(fifos)
  remove_logs(logs)
  invisible()
}

qrsh_describe <- function(id) {
  job <- id$process$job
  if (is.character(job) && length(job) == 1L && !is.na(job)) sprintf("Grid Engine task of job %s", job) else NA_character_
}

# ---- the node kind --------------------------------------------------------------------

qrsh_control_of <- function(id) {
  fifo <- id$process$control
  if (is.character(fifo) && length(fifo) == 1L && !is.na(fifo)) fifo else NA_character_
}

# Whether each worker's qrsh (our child) runs: it ends with its task. NA when the backend
# does not know it (a node of another R session).
qrsh_running <- function(ids) {
  state <- backend_child_state(ids_launcher_pids(ids))$state
  ifelse(state == "unknown", NA, state == "running")
}

qrsh_signal <- function(ids, signal, timeout = 0) {
  running <- qrsh_running(ids)
  sent <- running
  for (k in which(running %in% TRUE)) sent[k] <- qrsh_send_signal(qrsh_control_of(ids[[k]]), signal)
  sent
}

qrsh_stop <- function(ids, background = FALSE, grace = 5) {
  pids <- ids_launcher_pids(ids)
  fifos <- vapply(ids, qrsh_control_of, character(1))
  ours <- !is.na(pids) & backend_child_state(pids)$state != "unknown"
  if (background && any(ours)) {
    qrsh_stop_in_background(pids[ours], fifos[ours])
    remove_logs(ids_logs(ids))
  } else {
    # After DONE the workers end by themselves, and qrsh with them (about a second later).
    wait_until(function() !any(backend_child_state(pids[ours])$state == "running"), timeout = grace)
    qrsh_stop_tasks(pids[ours], fifos[ours], ids_logs(ids))
  }
  qrsh_remove_leftovers(unique(vapply(ids, function(id) as.character(id$host), character(1))))
  invisible()
}

# stopCluster(): the qrsh clients go to the backend's reaper thread, and a small sh of ours
# sends the workers still running after 5 s SIGTERM, after 7 s SIGKILL, through their FIFOs
# (opened read-write: never blocks, also once qrsh is gone), then removes the FIFOs. qrsh is
# only ended by the reaper after 10 s, when its task did not end even so.
qrsh_stop_in_background <- function(pids, fifos) {
  fifos <- fifos[!is.na(fifos)]
  script <- paste(
    "send() { for f in \"$@\"; do [ -p \"$f\" ] && { exec 3<>\"$f\"; echo \"$s\" >&3; exec 3>&-; }; done; }",
    "sleep 5; s=15; send \"$@\"; sleep 2; s=9; send \"$@\"; sleep 1; rm -f -- \"$@\"", sep = "\n")
  helper <- if (length(fifos) > 0L) {
    tryCatch(backend_launch("/bin/sh", c("-c", script, "sh", fifos), output = "/dev/null"), parallellyError = function(e) NULL)
  }
  backend_stop_in_background(pids, grace = 10, term_grace = 1)
  if (is.list(helper)) backend_stop_in_background(as.integer(helper$pid), grace = 15, term_grace = 1) else unlink(fifos)
  invisible()
}

# Remove the R temporary directories that killed workers left on `hosts` (task_after_kill()):
# one short task per host, now that the workers' slots are free, in the background.
qrsh_remove_leftovers <- function(hosts) {
  task_remove_leftovers("qrsh", hosts, "PE_HOSTFILE", grace = 30, argv = function(host, dirs) {
    c(qrsh_program(), "-inherit", "-nostdin", host, "rm", "-rf", "--", dirs)
  })
}

node_kind_qrsh <- list(
  name = "qrsh",
  # Before the local, ssh and rsh kinds (50+): rshcmd = "<qrsh>" is this kind's.
  priority = 11,
  claims = function(opts) identical(opts$rshcmd, "<qrsh>") && !isTRUE(attr(opts$worker, "localhost")),
  launcher = function(opts) qrsh_launcher(opts),
  rshcmd = "<qrsh>",
  job_variable = "PE_HOSTFILE",
  worker_is_local = qrsh_is_master_host,
  reachability = qrsh_reachability,
  # With "auto", a host's workers are forked (one task runs the host's fork server,
  # R/kind-fork.R) when it gets two or more; a single worker is one plain task.
  fork_pays = function(n) n >= 2L,
  launch_line = function(opts) paste("qrsh -inherit -V", as.character(opts$worker)),
  # Probes and signals are system calls and writes to a local FIFO.
  answers_locally = function(id) TRUE,
  group = function(id) "qrsh",
  probe = function(ids, timeout) qrsh_running(ids),
  signal = qrsh_signal,
  stop = qrsh_stop,
  # qrsh ends with its task's status, which the task script makes 128 + N for signal N.
  exit_cause = function(ids) task_exit_causes(ids, "qrsh", qrsh_describe),
  usage = function(ids, timeout) task_usage(ids, "task_start"),
  last_output = function(id, n = 10L) log_tail(if (is.null(id$log)) NA_character_ else id$log, n),
  after_kill = function(id) task_after_kill("qrsh", id),
  describe = qrsh_describe
)
