# Kind "fork": a worker forked by a fork server (setup_strategy = "fork", R/forkServer.R)
# on this machine or on a remote host. It is reached like any worker of its host (by PID
# and start time here, over the held SSH connection there), but its parent is the server,
# which is the one to ask how it ended. On a host reached only through the server itself
# (a Slurm step or a Grid Engine task runs it: the "<srun>" and "<qrsh>" kinds), the server
# is also the one that probes and signals its workers (fork_server_channel).

node_kind_fork <- list(
  name = "fork",
  priority = 40,
  # Chosen by the setup strategy, on top of the host's own kind (connect_workers()).
  claims = function(opts) FALSE,
  launcher = function(opts) stopf("Argument", "Forked workers are launched by setup_strategy = \"fork\""),
  answers_locally = function(id) isTRUE(id$local),
  group = function(id) paste("fork", fork_host_kind(id)$group(id)),
  probe = function(ids, timeout) fork_host_kind(ids[[1L]])$probe(ids, timeout),
  signal = function(ids, signal, timeout) fork_host_kind(ids[[1L]])$signal(ids, signal, timeout),
  stop = function(ids, background, grace = 5) {
    if (fork_via_server(ids[[1L]])) return(fork_server_stop(ids, background, grace))
    if (!isTRUE(ids[[1L]]$local)) return(stop_remote_nodes(ids, grace))
    live <- Filter(function(id) !isTRUE(id$killed) && !is.na(id$pid), ids)
    pids <- ids_pids(live)
    starts <- ids_starts(live)
    if (background) {
      # As for our children: a thread waits for the exits (a pidfd each), terminates the
      # rest after the grace period; the server reaps them.
      backend_stop_strangers_in_background(pids, starts, grace = 5, term_grace = 1)
    } else if (length(live) > 0L && !wait_until(function() !any(backend_probe(pids, starts) %in% TRUE), timeout = grace)) {
      terminate_forked(pids, starts)
    }
    remove_logs(ids_logs(ids))
  },
  stop_before_done = function(ids) isTRUE(ids[[1L]]$local),
  exit_cause = function(ids) {
    servers <- vapply(ids, function(id) id$fork_server, character(1))
    groups <- split(seq_along(ids), servers)
    # Stages (asked of every server, and with the other hosts, at once).
    asking <- lapply(groups, function(idx) fork_server_exit_states_stage(servers[idx[1L]], ids_pids(ids[idx])))
    waiting <- function(left) {
      asking <<- lapply(asking, function(a) if (is.function(a)) a(left) else a)
      if (any(vapply(asking, is.function, logical(1)))) return(waiting)
      causes <- rep(NA_character_, length(ids))
      for (g in seq_along(groups)) {
        st <- asking[[g]]
        causes[groups[[g]]] <- vapply(seq_along(groups[[g]]), function(k) exit_cause(st$state[k], st$status[k], st$signal[k]), character(1))
      }
      causes
    }
    waiting
  },
  usage = function(ids, timeout) fork_host_kind(ids[[1L]])$usage(ids, timeout),
  last_output = function(id, n) fork_host_kind(id)$last_output(id, n),
  after_kill = function(id) fork_host_kind(id)$after_kill(id)
)

# The kind of the forked worker's host: how it is reached.
fork_host_kind <- function(id) {
  if (isTRUE(id$local)) return(node_kind_local)
  if (fork_via_server(id)) fork_server_channel else node_kind_ssh
}

# Whether the worker's host is reached through its fork server alone (no SSH connection).
fork_via_server <- function(id) !isTRUE(id$local) && !is.character(id$ssh)

# The running or retired server of key `key`, or NULL once it is gone (it is dropped when
# no worker it forked is alive, and its workers die with it).
fork_server_by_key <- function(key) {
  server <- get0(key, envir = .package$fork_servers, inherits = FALSE)
  if (!is.null(server)) return(server)
  for (server in as.list(.package$retired_fork_servers)) if (identical(server$key, key)) return(server)
  NULL
}

# A request about `ids` (all of one server) to their server; `none` when it is gone.
fork_server_ask <- function(ids, what, args, none, timeout = 5) {
  server <- fork_server_by_key(ids[[1L]]$fork_server)
  if (is.null(server)) return(none)
  fork_server_call(server, what, args, timeout = max(min(timeout, 10), 1), on_failure = "retire")
}

fork_server_running <- function(ids, timeout = 5) {
  st <- fork_server_ask(ids, "state", ids_pids(ids), none = list(state = rep("gone", length(ids))), timeout = timeout)
  ifelse(st$state == "unknown", NA, st$state == "running")
}

# Probes and signals of workers forked on a host reached through the server alone: asked
# of the server, their parent (a worker's PID is its own until the server reaps it).
fork_server_channel <- list(
  group = function(id) paste("server", id$fork_server),
  probe = function(ids, timeout) fork_server_running(ids, timeout),
  signal = function(ids, signal, timeout) {
    fork_server_ask(ids, "signal", list(pids = ids_pids(ids), signal = signal), none = rep(FALSE, length(ids)), timeout = timeout)
  },
  usage = function(ids, timeout) unknown_usage(ids),
  # Their logs are on that host: the server reads them.
  last_output = function(id, n) {
    if (!is.character(id$log) || is.na(id$log)) return(character(0))
    tryCatch(fork_server_ask(list(id), "tail", list(path = id$log, n = n), none = character(0)), error = function(e) character(0))
  },
  after_kill = function(id) {
    if (!is.na(id$tempdir)) try(fork_server_ask(list(id), "unlink", id$tempdir, none = NULL), silent = TRUE)
    invisible()
  }
)

# Stop workers forked on a host reached through the server alone, sent DONE already. With
# `background`, the server (told to linger: R/forkServer.R) ends them itself; otherwise
# they get `grace` seconds to exit, then TERM and KILL through the server.
fork_server_stop <- function(ids, background, grace) {
  live <- Filter(function(id) !isTRUE(id$killed) && !is.na(id$pid), ids)
  # The server removes their logs (one that was told to end removes them as it exits).
  on.exit(try(fork_server_ask(ids, "unlink", ids_logs(ids), none = NULL), silent = TRUE))
  if (background || length(live) == 0L) return(invisible())
  if (!wait_until(function() !any(fork_server_running(live) %in% TRUE), timeout = grace, interval = 0.05)) {
    terminate_until_gone(
      alive = function() fork_server_running(live),
      send = function(k, signal) {
        try(fork_server_ask(live[k], "signal", list(pids = ids_pids(live[k]), signal = signal), none = NULL), silent = TRUE)
      },
      n = length(live), interval = 0.05)
  }
  invisible()
}

# `base` for workers asked for with setup_strategy = "fork" on a host that cannot fork:
# they are launched as "parallel" workers (parallel's worker loop knows no "fork").
plain_launcher <- function(base) {
  as_plain <- function(options_list) lapply(options_list, function(o) {
    if (identical(o$setup_strategy, "fork")) o$setup_strategy <- "parallel"
    o
  })
  launch <- base$launch
  base$launch <- function(options_list, port, launched) launch(as_plain(options_list), port, launched)
  if (is.function(base$submit)) {
    submit <- base$submit
    base$submit <- function(options_list, port, launched) submit(as_plain(options_list), port, launched)
  }
  base
}

# The launcher for a host with a fork server (`server`, started by R/setupHosts.R): the
# same interface as `base`, but the workers are forked by the server. The fork request is
# submitted and its answer polled (`submit()`), so that many hosts fork at once.
fork_launcher <- function(base, opts, server) {
  launcher <- base
  launcher$kind <- "fork"
  launcher$fork_server <- server$key
  launcher$submit <- function(options_list, port, launched) {
    # The reverse tunnel is asked for and polled like the fork, never waited for: a host
    # that does not answer holds no other host back.
    ticket <- if (!server$local && isTRUE(opts$revtunnel)) backend_ssh_submit_forward(server$ssh, port)
    worker_port <- if (is.null(ticket)) port
    requested <- FALSE
    request <- function() lapply(seq_along(options_list), function(i) {
      o <- options_list[[i]]
      # Output that would go to /dev/null goes to a log of ours instead, removed with the
      # node, so that a worker's death can be explained with what it said last.
      out <- if (is.null(o$outfile)) "" else o$outfile
      if (identical(out, "/dev/null")) {
        out <- if (server$local) tempfile("parallelly-worker-", fileext = ".log") else remote_log_path(launched$token[i])
        launched$log[i] <<- out
      }
      list(token = launched$token[i], master = o$master, port = worker_port, timeout = o$timeout,
           setup_timeout = o$connectTimeout, xdr = isTRUE(o$useXDR), outfile = out,
           socket_options = if (is.character(o$socketOptions)) o$socketOptions else character(0),
           lean_loop = internal_ok("work_loop"))
    })
    poll <- function() {
      if (is.null(worker_port)) {
        answer <- backend_ssh_poll(ticket)
        if (is.null(answer)) return(NULL)
        worker_port <<- ssh_shaped(answer, function(x) is.numeric(x) && length(x) == 1L, server$host, "setting up the reverse tunnel")
        ticket <<- NULL
      }
      if (!requested) {
        fork_server_send(server, "fork", request())
        requested <<- TRUE
      }
      answer <- fork_server_receive(server)
      if (is.null(answer)) return(NULL)
      # A server that failed is stopped with the workers it may have half made.
      res <- fork_server_value(server, answer, function() fork_server_drop(server))
      launched$pid <- as.integer(res$pid)
      launched$start_time <- res$start_time  # clock ticks since boot, read by the server
      fork_server_add_children(server, launched$pid, launched$start_time)
      launched
    }
    structure(function() tryCatch(poll(), parallellyError = function(e) { e$host <- server$host; stop(e) }),
              cancel = function() if (!is.null(ticket)) backend_ssh_cancel(ticket))
  }
  launcher$launch <- function(options_list, port, launched) {
    poll <- launcher$submit(options_list, port, launched)
    attr(poll, "cancel") <- function() fork_server_drop(server)
    launcher_wait(poll, opts$connectTimeout, server$host, "forking workers")
  }
  if (server$local || !is.character(server$ssh)) {
    # At most twice a second through a server (a request to a remote host).
    last_check <- Sys.time() - 1
    launcher$check <- function(launched, waiting) {
      if (length(waiting) == 0L) return(NULL)
      if (!server$local) {
        if (Sys.time() - last_check < 0.5) return(NULL)
        last_check <<- Sys.time()
      }
      st <- NULL
      alive <- if (server$local) {
        backend_probe(launched$pid[waiting], launched$start_time[waiting])
      } else {
        st <- fork_server_exit_states(server$key, launched$pid[waiting])
        ifelse(st$state == "unknown", NA, st$state == "running")
      }
      dead <- which(alive %in% FALSE)
      if (length(dead) == 0L) return(NULL)
      k <- waiting[dead[1L]]
      if (is.null(st)) st <- fork_server_exit_states(server$key, launched$pid[k]) else st <- lapply(st, `[`, dead[1L])
      list(index = k, how = describe_exit(st$state[1L], st$status[1L], st$signal[1L]))
    }
  }
  launcher
}

# Stop local forked workers (not our children: probed and signalled by PID and start time).
terminate_forked <- function(pids, start_times, grace = 1) {
  invisible(terminate_until_gone(
    alive = function() backend_probe(pids, start_times),
    send = function(k, signal) {
      for (j in k) try(backend_signal(pids[j], signal, start_time = start_times[j]), silent = TRUE)
    },
    n = length(pids), grace = grace))
}
