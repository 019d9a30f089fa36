# Kind "local": a worker that is a child process of this R session, started by the Rust
# backend without a shell. The backend holds its child handle: it knows how the worker
# ended, keeps what it wrote to /dev/null (the last 16 KiB), and reaps it.

local_launcher <- function() {
  list(
    kind = "local",
    remote = FALSE,
    ssh_key = NULL,
    launch = function(options_list, port, launched) {
      # Everything is prepared first, so that the spawns follow each other closely: each
      # worker that starts competes for the CPU with the master that launches the next.
      # Workers of this R start its binary directly (R/directLaunch.R).
      specs <- lapply(options_list, function(o) direct_r_spec(o, worker_launch_spec(o, port)))
      # Output that would go to /dev/null is kept in memory instead (the last 16 KiB), so
      # that a worker's death can be explained with what it said last.
      capture <- vapply(options_list, function(o) identical(o$outfile, "/dev/null"), logical(1))
      for (i in which(capture)) specs[[i]]$args[specs[[i]]$args == "OUT=/dev/null"] <- "OUT="
      logs <- vapply(seq_along(options_list), function(i) {
        o <- options_list[[i]]
        if (capture[i] || is.null(o$outfile)) "" else tempfile("parallelly-worker-", fileext = ".log")
      }, character(1))
      nice <- vapply(options_list, function(o) if (!is.na(o$renice) && o$renice > 0L) o$renice else 0L, integer(1))
      results <- vector("list", length(specs))
      for (i in seq_along(specs)) {
        spec <- specs[[i]]
        results[[i]] <- tryCatch(
          backend_launch(spec$program, spec$args,
                         env = c(spec$env, R_PARALLELLY_WORKER_TOKEN = launched$token[i]),
                         unset = spec$unset, output = logs[i], nice = nice[i], capture = capture[i]),
          parallellyError = function(e) e
        )
        if (inherits(results[[i]], "error")) break
      }
      # Their entry file, while they start (lean_worker_entry_file()).
      if (uses_lean_worker_entry(unlist(lapply(specs, `[[`, "args")))) lean_worker_entry_file()
      for (i in seq_along(results)) {
        res <- results[[i]]
        if (is.null(res)) next
        if (nzchar(logs[i])) launched$log[i] <- logs[i]
        if (inherits(res, "error")) {
          opts <- options_list[[i]]
          stopf("Launch",
            "Failed to launch R worker #%d on local machine '%s': %s. Check argument 'rscript' (%s).",
            opts$rank, opts$worker, conditionMessage(res), opts$rscript,
            extra_class = "PSOCKConnectionError", fields = list(host = "localhost", rank = opts$rank))
        }
        launched$pid[i] <- as.integer(res$pid)
        launched$start_time[i] <- res$start_time
      }
      launched
    },
    check = function(launched, waiting) first_exited_child(launched, waiting),
    start_time = backend_start_time,
    connected = function(nodes) invisible()
  )
}

node_kind_local <- list(
  name = "local",
  priority = 50,
  claims = function(opts) isTRUE(attr(opts$worker, "localhost")),
  launcher = function(opts) local_launcher(),
  # Local nodes of other code are probed and signalled as local processes.
  adopts = function(local) local,
  answers_locally = function(id) TRUE,
  group = function(id) "localhost",
  probe = function(ids, timeout) backend_probe(ids_pids(ids), ids_starts(ids)),
  signal = function(ids, signal, timeout) local_signal(ids, signal),
  stop = function(ids, background, grace = 5) stop_children(ids, background, grace),
  stop_before_done = function(ids) TRUE,
  exit_cause = function(ids) {
    st <- backend_child_state(ids_launcher_pids(ids))
    vapply(seq_along(ids), function(k) exit_cause(st$state[k], st$status[k], st$signal[k]), character(1))
  },
  usage = function(ids, timeout) backend_usage(ids_pids(ids)),
  last_output = function(id, n) child_output(id, n),
  after_kill = function(id) remove_local_tempdir(id)
)

# The first of the launched children `waiting` (indices) that has ended: list(index, how),
# or NULL. `how(state, status, signal, i)` says how worker i ended.
first_exited_child <- function(launched, waiting, how = function(state, status, signal, i) describe_exit(state, status, signal)) {
  if (length(waiting) == 0L) return(NULL)
  st <- backend_child_state(launched$pid[waiting])
  dead <- which(st$state != "running" & st$state != "unknown")
  if (length(dead) == 0L) return(NULL)
  k <- dead[1L]
  list(index = waiting[k], how = how(st$state[k], st$status[k], st$signal[k], waiting[k]))
}

# Signal local processes by (PID, start time): a reused PID is never signalled.
local_signal <- function(ids, signal) {
  vapply(ids, function(id) isTRUE(backend_signal(id$pid, signal, start_time = id$start_time)), logical(1))
}

# The last `n` lines a child of ours wrote: from its log file, or from what the backend
# kept of its output to /dev/null.
child_output <- function(id, n) {
  log <- if (is.character(id$log) && length(id$log) == 1L) id$log else NA_character_
  if (!is.na(log) && nzchar(log)) return(log_tail(log, n))
  if (!is.numeric(id$launcher_pid) || is.na(id$launcher_pid)) return(character(0))
  text <- backend_child_output(id$launcher_pid)
  if (is.na(text)) return(character(0))
  lines <- strsplit(text, "\n", fixed = TRUE)[[1L]]
  utils::tail(lines[nzchar(lines)], n)
}

# Our own children (local workers, or the external SSH clients of remote ones), sent DONE
# already (or, with `grace` 0, a failed setup's): left to a reaper thread (`background`), or
# waited for here up to `grace` seconds and then terminated; their logs removed.
stop_children <- function(ids, background, grace = 5) {
  pids <- ids_launcher_pids(ids)
  pids <- pids[!is.na(pids)]
  ours <- if (length(pids) > 0L) pids[backend_child_state(pids)$state != "unknown"] else integer(0)
  if (length(ours) > 0L) {
    if (background) {
      backend_stop_in_background(ours, grace = 5, term_grace = 1)
    } else {
      wait_until(function() !any(backend_child_state(ours)$state == "running"), timeout = grace)
      terminate_processes(ours)
    }
  }
  remove_logs(ids_logs(ids))
}

# Stop processes we started: SIGTERM, then SIGKILL after `grace` seconds; reap them all.
terminate_processes <- function(pids, grace = 1) {
  pids <- unique(pids[!is.na(pids)])
  if (length(pids) == 0L) return(invisible(TRUE))
  gone <- terminate_until_gone(
    alive = function() backend_child_state(pids)$state == "running",
    send = function(k, signal) for (pid in pids[k]) try(backend_signal(pid, signal), silent = TRUE),
    n = length(pids), grace = grace)
  for (pid in pids) backend_forget_child(pid)
  invisible(gone)
}

# A killed local worker's R temporary directory.
remove_local_tempdir <- function(id) {
  if (!is.na(id$tempdir) && dir.exists(id$tempdir)) unlink(id$tempdir, recursive = TRUE, force = TRUE)
  invisible()
}
