# What the scheduler kinds ("<srun>", "<qrsh>": R/kind-srun.R, R/kind-qrsh.R) share: each
# worker runs as a task of the job the master runs in, through a client process of ours
# (srun, qrsh) that ends with its task and with the task's exit status (128 + N for a
# worker killed by signal N). `client` names that process ("srun"), `task_field` the
# column of the node's process where the launch recorded when the task started.

# How each worker ended, as its client's exit tells; `describe(id)` adds which task it was
# (NA: nothing to add).
task_exit_causes <- function(ids, client, describe) {
  vapply(ids, function(id) {
    pid <- id$launcher_pid
    if (is.null(pid) || is.na(pid)) return(NA_character_)
    st <- backend_child_state(pid)
    if (st$state %in% c("running", "unknown")) return(NA_character_)
    status <- st$status
    cause <- if (st$state == "signalled") {
      sprintf("%s was killed by signal %d (%s)", client, st$signal, signal_name(st$signal))
    } else if (is.na(status)) {
      "exited"
    } else if (status > 128L && status <= 192L) {
      sprintf("killed by signal %d (%s)", status - 128L, signal_name(status - 128L))
    } else {
      sprintf("exit status %d", status)
    }
    task <- describe(id)
    if (is.na(task)) cause else sprintf("%s (%s)", cause, task)
  }, character(1))
}

# Resource use is on the task's host, out of reach without another task: only the uptime.
task_usage <- function(ids, task_field) {
  n <- length(ids)
  up <- vapply(ids, function(id) {
    t0 <- id$process[[task_field]]
    if (is.numeric(t0) && length(t0) == 1L && !is.na(t0)) as.numeric(Sys.time()) - t0 else NA_real_
  }, numeric(1))
  list(rss = rep(NA_real_, n), cpu = rep(NA_real_, n), uptime = up)
}

# Killed workers' R temporary directories, by host (kind_table(kind, "leftovers")):
# removing one takes a task on its host, which killNode() must not start (the job may have
# no slot left there); the kind's stop() removes them, one task per host.
task_after_kill <- function(kind, id) {
  tmp <- id$tempdir
  if (!is.character(tmp) || length(tmp) != 1L || is.na(tmp) || !nzchar(tmp)) return(invisible())
  leftovers <- kind_table(kind, "leftovers")
  host <- as.character(id$host)
  assign(host, c(get0(host, envir = leftovers, ifnotfound = character(0)), tmp), envir = leftovers)
  invisible()
}

# Remove what killed workers left on `hosts`, inside the job (`job_variable` set): one short
# task per host, `argv(host, dirs)` (run without a shell), left to the reaper thread, which
# ends it after `grace` seconds.
task_remove_leftovers <- function(kind, hosts, job_variable, argv, grace) {
  leftovers <- kind_table(kind, "leftovers")
  for (host in intersect(hosts, ls(leftovers))) {
    dirs <- get(host, envir = leftovers)
    rm(list = host, envir = leftovers)
    dirs <- dirs[grepl("^/[[:alnum:]_./-]*/Rtmp[[:alnum:]]+$", dirs)]  # only ever an R session's own
    if (length(dirs) == 0L || !nzchar(Sys.getenv(job_variable))) next
    command <- argv(host, dirs)
    res <- tryCatch(backend_launch(command[1L], command[-1L], output = "/dev/null"), parallellyError = function(e) NULL)
    if (is.list(res)) backend_stop_in_background(as.integer(res$pid), grace = grace, term_grace = 1)
  }
  invisible()
}
