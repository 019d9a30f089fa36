# Kind "ssh": a worker on another machine, reached through the built-in SSH client's held
# connection to its host (one per user, host and port). One control-shell command starts
# all of a host's workers; it is their parent, so it can tell how they ended. Probes,
# signals and resource use are one command per host, for all of its workers at once.

node_kind_ssh <- list(
  name = "ssh",
  priority = 60,
  claims = function(opts) !is.null(opts$ssh),
  launcher = function(opts) remote_launcher(opts),
  # The built-in client connects on a thread of its own before the launch (R/setupHosts.R).
  connect = function(opts, timeout) ssh_connect_submit(opts, timeout),
  answers_locally = function(id) FALSE,
  group = function(id) id$ssh,
  probe = function(ids, timeout) {
    ssh_ask(ids, timeout, "checking whether workers are alive",
            function(key, left) backend_ssh_submit_probe(key, ids_pids(ids), ids_starts(ids), timeout = left))
  },
  signal = function(ids, signal, timeout) {
    ssh_ask(ids, timeout, "signalling workers",
            function(key, left) backend_ssh_submit_signal(key, ids_pids(ids), ids_starts(ids), signal, timeout = left))
  },
  stop = function(ids, background, grace = 5) stop_remote_nodes(ids, grace),
  exit_cause = function(ids) ssh_exit_causes(ids),
  usage = function(ids, timeout) {
    ssh_ask(ids, timeout, "reading resource use",
            function(key, left) backend_ssh_submit_usage(key, ids_pids(ids), timeout = left))
  },
  last_output = function(id, n) {
    key <- if (ssh_connection_alive(id$ssh)) id$ssh else tryCatch(ssh_key_of(id$node), error = function(e) NULL)
    if (is.null(key)) return(character(0))
    ssh_tail(key, id$host, id$log, n = n, timeout = 5)
  },
  after_kill = function(id) {
    # Only ever an R session's own temporary directory.
    if (is.na(id$tempdir) || !grepl("/Rtmp[[:alnum:]]+$", id$tempdir)) return(invisible())
    key <- tryCatch(ssh_key_of(id$node), error = function(e) NULL)
    if (!is.null(key)) ssh_remove_files(key, id$host, id$tempdir, recursive = TRUE)
    invisible()
  }
)

# A request to the host of `ids` as stages: (re)connect if the held connection was lost,
# submit, collect; all within `timeout` (0: option parallelly.ssh.timeout). `submit(key,
# left)` submits the request with `left` seconds of budget.
ssh_ask <- function(ids, timeout, what, submit) {
  budget <- ssh_probe_timeout(timeout)
  host <- ids[[1L]]$host
  key <- ids[[1L]]$ssh
  options <- node_options(ids[[1L]]$node)
  connecting <- if (!ssh_connection_alive(key)) ssh_connect_submit(options, budget)
  function(left) {
    if (!is.null(connecting)) key <- ssh_connect_collect(connecting, left(), host)
    ticket <- submit(key, left())
    function(left) backend_ssh_wait(ticket, left(), host, what)
  }
}

# Whether the held connection `key` is open now (no network round trip).
ssh_connection_alive <- function(key) {
  if (!is.character(key) || length(key) != 1L) return(FALSE)
  conns <- backend_ssh_connections()
  lost <- conns$key == key & !conns$alive & nzchar(conns$error)
  # Why it was lost outlives the connection (a reconnect replaces it): see ssh_lost_reason().
  if (any(lost)) assign(key, conns$error[lost][1L], envir = ssh_lost_reasons())
  any(conns$key == key & conns$alive)
}

# Why the held connection `key` was lost ("" if it was not, or is not known).
ssh_lost_reason <- function(key) {
  if (!is.character(key) || length(key) != 1L) return("")
  conns <- backend_ssh_connections()
  why <- conns$error[conns$key == key & !conns$alive]
  if (length(why) && nzchar(why[1L])) return(why[1L])
  if (exists(key, envir = ssh_lost_reasons(), inherits = FALSE)) get(key, envir = ssh_lost_reasons()) else ""
}

ssh_lost_reasons <- function() {
  if (is.null(.package$ssh_lost)) .package$ssh_lost <- new.env(parent = emptyenv())
  .package$ssh_lost
}

# The held connection of a remote node, reopened if it was lost (within `timeout` seconds).
ssh_key_of <- function(node, timeout = ssh_probe_timeout(0)) {
  key <- attr(node, "process", exact = TRUE)$ssh
  if (ssh_connection_alive(key)) return(key)
  options <- node_options(node)
  if (!is.null(options$ssh)) return(ssh_connection(options, timeout = timeout)$key)
  stopf("Ssh", "No SSH connection is known for the node on host '%s'", as.character(node$host))
}

# The remote workers of one host, sent DONE already: wait up to `grace` seconds for them to
# exit, terminate the rest, remove their logs, and close the host's connection if no other
# node uses it. As stages (R/nodeKind.R), so that stop_nodes() stops all hosts at once. A
# host that does not answer within the grace is not waited for further (its workers leave
# once their connection to the master is gone); its logs stay. A killed worker needs no stopping, only its log removed.
stop_remote_nodes <- function(ids, grace = 5) {
  ids <- Filter(function(id) !is.na(id$pid), ids)
  if (length(ids) == 0L) return(invisible())
  key <- ids[[1L]]$ssh
  host <- ids[[1L]]$host
  live <- Filter(function(id) !isTRUE(id$killed), ids)
  pids <- ids_pids(live)
  starts <- ids_starts(live)
  deadline <- Sys.time() + grace
  within_grace <- function() max(as.double(deadline - Sys.time(), units = "secs"), 0.05)
  finish <- function(reachable) {
    conn <- if (reachable) {
      if (ssh_connection_alive(key)) key else tryCatch(ssh_key_of(ids[[1L]]$node, timeout = 5), error = function(e) NULL)
    }
    if (!is.null(conn)) ssh_remove_files(conn, host, ids_logs(ids))
    ssh_release_nodes(key, vapply(ids, function(id) id$key, character(1)), probe = !is.null(conn))
    invisible()
  }
  if (length(live) == 0L) return(finish(TRUE))
  # Workers never told to finish (a failed setup, no node registered yet) are terminated at
  # once; the setup itself lets go of the connection.
  if (grace <= 0) {
    if (ssh_connection_alive(key) && remote_terminate(key, host, pids, starts)) ssh_remove_files(key, host, ids_logs(ids))
    return(invisible())
  }
  # Each round polls without waiting: every host's probe goes out in the first round, and
  # a host that does not answer holds no other host's clean-up back.
  ticket <- NULL
  waiting <- function(left) {
    if (is.null(ticket)) {
      conn <- if (ssh_connection_alive(key)) key else tryCatch(ssh_key_of(ids[[1L]]$node, timeout = within_grace()), error = function(e) NULL)
      ticket <<- if (!is.null(conn)) tryCatch(backend_ssh_submit_probe(conn, pids, starts, timeout = within_grace()), error = function(e) NULL)
      return(if (is.null(ticket)) finish(FALSE) else waiting)
    }
    alive <- tryCatch(backend_ssh_poll(ticket), error = function(e) e)
    if (is.null(alive)) {
      if (Sys.time() < deadline) {
        Sys.sleep(0.01)
        return(waiting)
      }
      backend_ssh_cancel(ticket)
      return(finish(FALSE))
    }
    ticket <<- NULL
    if (inherits(alive, "error")) return(finish(FALSE))
    if (!any(alive %in% TRUE)) return(finish(TRUE))
    if (Sys.time() >= deadline) {
      remote_terminate(key, host, pids, starts, timeout = 2)
      return(finish(TRUE))
    }
    Sys.sleep(0.02)
    waiting
  }
  waiting
}

# How the remote workers of `ids` (dead) ended, as their parent shell tells (once; what it
# told is kept for later questions). A stage (R/nodeKind.R): the request goes out at once,
# so that all hosts are asked together; a host that does not answer within `timeout`
# seconds (or the caller's time left) gets what was kept, or NA.
ssh_exit_causes <- function(ids, timeout = 5) {
  key <- tryCatch(ssh_key_of(ids[[1L]]$node), error = function(e) NULL)
  pids <- ids_pids(ids)
  causes_from <- function(status) {
    causes <- rep(NA_character_, length(ids))
    for (k in seq_along(ids)) {
      # 127: the shell did not start this worker (a new connection), or has told already.
      s <- if (is.numeric(status) && length(status) == length(ids)) status[k] else NA_integer_
      if (!is.na(s) && s != 127L) {
        causes[k] <- shell_exit_cause(s)
        assign(ids[[k]]$key, causes[k], envir = .package$exit_causes)
      } else {
        causes[k] <- get0(ids[[k]]$key, envir = .package$exit_causes, inherits = FALSE, ifnotfound = NA_character_)
      }
    }
    causes
  }
  if (is.null(key)) return(rep(NA_character_, length(ids)))
  ticket <- tryCatch(backend_ssh_submit_exit(key, pids, timeout), error = function(e) NULL)
  if (is.null(ticket)) return(causes_from(NULL))
  deadline <- NULL
  waiting <- function(left) {
    if (is.null(deadline)) deadline <<- Sys.time() + min(timeout, left())
    status <- tryCatch(backend_ssh_poll(ticket), error = function(e) NA_integer_)
    if (!is.null(status)) return(causes_from(status))
    if (Sys.time() >= deadline) {
      backend_ssh_cancel(ticket)
      return(causes_from(NULL))
    }
    Sys.sleep(0.01)
    waiting
  }
  waiting
}

# The last `n` lines of a file on the host ("" and NA: none); best effort.
ssh_tail <- function(key, host, path, n, timeout) {
  if (!is.character(path) || length(path) != 1L || is.na(path) || !nzchar(path)) return(character(0))
  out <- tryCatch(backend_ssh_run(key, sprintf("tail -n %d %s 2>/dev/null", as.integer(n), sh_quote(path, type = "sh")), timeout, host, "reading a worker log"), error = function(e) "")
  lines <- strsplit(out, "\n", fixed = TRUE)[[1L]]
  lines[nzchar(lines)]
}

# Remove files (or, with `recursive`, directories) on the host; best effort, bounded.
ssh_remove_files <- function(key, host, paths, recursive = FALSE, timeout = 5) {
  paths <- paths[!is.na(paths) & nzchar(paths)]
  if (length(paths) == 0L) return(invisible())
  command <- paste(if (recursive) "rm -rf" else "rm -f", paste(sh_quote(paths, type = "sh"), collapse = " "))
  try(backend_ssh_run(key, command, timeout, host, "removing worker files"), silent = TRUE)
  invisible()
}

# Where a remote worker's log goes (its host's /tmp, named after its token).
remote_log_path <- function(token) sprintf("/tmp/parallelly-worker-%s.log", substr(token, 1L, 16L))

remote_launcher <- function(opts) {
  host <- as.character(opts$worker)
  key <- ssh_connection(opts)$key
  timeout <- max(opts$connectTimeout, 1)
  probing <- new.env(parent = emptyenv())
  probing$ticket <- NULL
  probing$last <- Sys.time() - 10
  # The launch as stages (the reverse tunnel, then the launch command), polled by
  # connect_hosts() with the other hosts'; its `cancel` withdraws the pending request.
  submit <- function(options_list, port, launched) {
    ticket <- if (isTRUE(opts$revtunnel)) backend_ssh_submit_forward(key, port)
    worker_port <- if (is.null(ticket)) port
    poll <- function() {
      if (is.null(worker_port)) {
        answer <- backend_ssh_poll(ticket)
        if (is.null(answer)) return(NULL)
        worker_port <<- ssh_shaped(answer, function(x) is.numeric(x) && length(x) == 1L, host, "setting up the reverse tunnel")
        ticket <<- NULL
      }
      if (is.null(ticket)) {
        commands <- vapply(seq_along(options_list), function(i) {
          remote_worker_command(options_list[[i]], worker_port, launched$token[i], keep_output = TRUE)
        }, character(1))
        ticket <<- backend_ssh_submit_launch(key, opts$launcher$program, commands,
                                             remote_log_path(launched$token), timeout)
      }
      res <- backend_ssh_poll(ticket)
      if (is.null(res)) return(NULL)
      ticket <<- NULL
      res <- ssh_shaped(res, function(x) is.list(x) && all(c("pid", "start_time", "log", "missing", "unwritable") %in% names(x)),
                        host, "launching workers")
      check_remote_launch(res, host, opts$launcher$program, nrow(launched))
      launched$pid <- res$pid
      launched$start_time <- res$start_time
      launched$log <- res$log
      probing$worker_port <- worker_port
      launched
    }
    structure(function() tryCatch(poll(), parallellyError = function(e) { e$host <- host; stop(e) }),
              cancel = function() if (!is.null(ticket)) backend_ssh_cancel(ticket))
  }
  list(
    kind = "ssh",
    remote = TRUE,
    ssh_key = key,
    submit = submit,
    launch = function(options_list, port, launched) {
      launcher_wait(submit(options_list, port, launched), timeout, host, "launching workers")
    },
    # The port the workers connect to on their host (the reverse tunnel's, with revtunnel).
    worker_port = function() probing$worker_port,
    check = function(launched, waiting) {
      # One probe at a time, at most twice a second, never blocking the accept loop.
      if (!is.null(probing$ticket)) {
        alive <- tryCatch(backend_ssh_poll(probing$ticket), parallellyError = function(e) NULL)
        if (is.null(alive)) return(NULL)
        probing$ticket <- NULL
        gone <- which(probing$pids %in% launched$pid[waiting] & alive %in% FALSE)
        if (length(gone) > 0L) {
          pid <- probing$pids[gone[1L]]
          return(list(index = match(pid, launched$pid), how = remote_exit_how(key, host, pid)))
        }
        return(NULL)
      }
      if (length(waiting) == 0L || difftime(Sys.time(), probing$last, units = "secs") < 0.5) return(NULL)
      probing$last <- Sys.time()
      probing$pids <- launched$pid[waiting]
      probing$ticket <- backend_ssh_submit_probe(key, launched$pid[waiting], launched$start_time[waiting])
      NULL
    },
    cancel = function() {
      if (!is.null(probing$ticket)) backend_ssh_cancel(probing$ticket)
      probing$ticket <- NULL
    },
    start_time = function(pid) NA_real_,
    connected = function(nodes) {
      for (node in nodes) ssh_register_node(key, node)
    }
  )
}

# What the host answered to a launch: every worker started, or an error that says why not.
check_remote_launch <- function(res, host, program, n) {
  if (length(res$missing) > 0L) {
    stopf("Launch",
      "Cannot launch R workers on host '%s': the R launcher '%s' was not found there. Set argument 'rscript' to the path of Rscript on that host, e.g. rscript = \"/usr/bin/Rscript\".",
      host, program, extra_class = "PSOCKConnectionError", fields = list(host = host))
  }
  if (length(res$unwritable) > 0L) {
    dir <- res$unwritable[1L]
    stopf("Launch",
      "Cannot launch R workers on host '%s': its directory '%s' is full or not writable (a one-byte test write there failed), and the workers need it for their logs and as R's temporary directory. Free space in '%s' on that host, or fix its permissions (see 'df %s' and 'ls -ld %s' there).",
      host, dir, dir, dir, dir, extra_class = "PSOCKConnectionError", fields = list(host = host, directory = dir))
  }
  if (length(res$pid) != n) {
    stopf("Launch", "Launching %d R workers on host '%s' started %d of them.", n, host,
          length(res$pid), extra_class = "PSOCKConnectionError", fields = list(host = host))
  }
  invisible(res)
}

# How a remote worker that the control shell started ended, as describe_exit() says it:
# the shell, its parent, tells the exit status (once). "exited" if it cannot tell.
remote_exit_how <- function(key, host, pid) {
  status <- tryCatch(backend_ssh_exit_status(key, pid, 5, host, "reading an exit status"),
                     error = function(e) NA_integer_)
  status <- suppressWarnings(as.integer(status[1L]))
  if (is.na(status) || status == 127L) return("exited")
  if (status > 128L && status <= 192L) return(describe_exit("signalled", NA_integer_, status - 128L))
  describe_exit("exited", status, NA_integer_)
}

# Stop remote processes: SIGTERM, then SIGKILL for those still there after `grace` seconds.
remote_terminate <- function(key, host, pids, start_times, grace = 1, timeout = 10) {
  reachable <- TRUE
  terminate_until_gone(
    alive = function() {
      if (!reachable) return(rep(NA, length(pids)))
      tryCatch(backend_ssh_probe(key, pids, start_times, timeout, host), error = function(e) rep(NA, length(pids)))
    },
    send = function(k, signal) {
      sent <- tryCatch(backend_ssh_signal(key, pids[k], start_times[k], signal, timeout, host, "stopping workers"),
                       error = function(e) NULL)
      # A host that cannot be told is not waited for.
      if (is.null(sent)) reachable <<- FALSE
    },
    n = length(pids), grace = grace, interval = 0.05)
  invisible(reachable)
}
