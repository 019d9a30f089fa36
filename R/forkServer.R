# setup_strategy = "fork": one plain worker per host and launch specification, the fork
# server, is started the usual way (locally, or over the held SSH connection); every worker
# after it is a fork of that process, so that a worker costs a fork and a connect instead of
# a fresh R session. The server is a hidden node: the master sends it requests as ordinary
# EXEC messages. Its forked children are made to look fresh (own PID, process group, R
# temporary directory, no .Random.seed, no inherited connections, parallelly not loaded)
# and then run the same worker loop as parallel:::.workRSOCK(). They die with the server
# (parent-death signal), which dies with the master; the server is stopped when no worker
# it forked is alive any more. A host without a parallelly that can fork (an older version,
# or none) gets its workers launched the usual way.

# Which launch specifications can share a server: everything R starts with (program,
# R arguments, environment, niceness), not what a worker is told when it connects.
fork_server_key <- function(opts, host_key) {
  spec <- worker_launch_spec(opts, port = 0L)
  setup <- grepl("^(MASTER|PORT|OUT|TIMEOUT|SETUPTIMEOUT|XDR|SETUPSTRATEGY)=", spec$args)
  paste(c(host_key, spec$program, spec$args[!setup], names(spec$env), spec$env, spec$unset,
          opts$renice), collapse = "\r")
}

# The server for the host and launch specification of `opts`: the running one, or a new
# one. NULL when that host cannot fork workers.
fork_server_for <- function(opts, port, verbose = FALSE) {
  local <- isTRUE(attr(opts$worker, "localhost"))
  host_key <- if (local) "localhost" else ssh_connection(opts)$key
  key <- fork_server_key(opts, host_key)
  server <- get0(key, envir = .package$fork_servers, inherits = FALSE)
  if (!is.null(server)) {
    if (fork_server_alive(server)) return(server)
    fork_server_drop(server)
  }
  if (exists(key, envir = .package$fork_refusals, inherits = FALSE)) return(NULL)
  server_opts <- opts
  server_opts$setup_strategy <- "parallel"
  server_opts$outfile <- "/dev/null"  # the workers' own outfile is theirs to open
  server_opts$worker_args <- worker_r_args(server_opts)
  node <- connect_workers(list(server_opts), verbose = verbose)[[1L]]
  server <- list(key = key, node = node, local = local, host = as.character(opts$worker),
                 ssh = attr(node, "process")$ssh)
  ready <- tryCatch(fork_server_call(server, "ready", list(), timeout = opts$connectTimeout),
                    error = function(e) NULL)
  if (!isTRUE(ready)) {
    # No parallelly (or one that cannot fork) on that host: launch its workers as usual.
    mdebugf("Host '%s' cannot fork workers; launching them the usual way", server$host)
    assign(key, TRUE, envir = .package$fork_refusals)
    stop_nodes(list(node))
    return(NULL)
  }
  server$children <- data.frame(pid = integer(0), start_time = numeric(0))
  assign(key, server, envir = .package$fork_servers)
  server
}

fork_server_alive <- function(server) {
  con <- server$node$con
  isTRUE(isConnectionValid(con)) && !is_false_like(probe_nodes(list(server$node), timeout = 5))
}

# A server that can no longer be asked: out of the registry (a new one takes its place for
# new workers), kept aside until the workers it forked are gone.
fork_server_retire <- function(server) {
  current <- get0(server$key, envir = .package$fork_servers, inherits = FALSE)
  if (!is.null(current) && identical(node_key(current$node), node_key(server$node))) {
    server <- current  # with its list of children
    rm(list = server$key, envir = .package$fork_servers)
  }
  assign(node_key(server$node), server, envir = .package$retired_fork_servers)
}

fork_server_drop <- function(server) {
  if (exists(server$key, envir = .package$fork_servers, inherits = FALSE)) {
    rm(list = server$key, envir = .package$fork_servers)
  }
  try(stop_nodes(list(server$node)), silent = TRUE)
}

# The call the server runs: it looks the request up in its own parallelly, so that a host
# with another version (or none) answers NULL instead of failing.
fork_server_dispatch <- function(what, args) {
  loaded <- loadedNamespaces()
  ns <- tryCatch(asNamespace("parallelly"), error = function(e) NULL)
  fun <- if (is.environment(ns)) get0(paste0("fork_server_do_", what), envir = ns, inherits = FALSE)
  if (!is.function(fun)) return(NULL)
  fun(args, loaded)
}
environment(fork_server_dispatch) <- baseenv()

# Send one request to a server and wait (interruptibly, at most `timeout` seconds) for the
# answer. A server that does not answer (or is interrupted while it should) can no longer
# be talked to -- a late answer would be read by the next request: it is stopped with its
# workers (`on_failure = "stop"`, for fork requests, whose workers may be half made), or
# retired (`"retire"`: no new work, stopped once its workers are gone).
fork_server_call <- function(server, what, args, timeout = 30, on_failure = c("stop", "retire")) {
  on_failure <- match.arg(on_failure)
  con <- server$node$con
  answered <- FALSE
  give_up <- function() if (on_failure == "stop") fork_server_drop(server) else fork_server_retire(server)
  on.exit(if (!answered) try(give_up(), silent = TRUE))
  msg <- list(type = "EXEC", data = list(fun = fork_server_dispatch, args = list(what, args),
                                         return = TRUE, tag = NULL), tag = NULL)
  answer <- tryCatch({
    serialize(msg, con, xdr = node_xdr(server$node))
    deadline <- Sys.time() + timeout
    repeat {
      if (socketSelect(list(con), write = FALSE, timeout = 0.1)) break
      if (Sys.time() >= deadline) {
        stopf("Timeout", "The fork server on host '%s' did not answer within %g seconds", server$host, timeout,
              fields = list(host = server$host))
      }
    }
    unserialize(con)
  }, error = function(e) e)
  answered <- TRUE
  if (inherits(answer, "error") || !isTRUE(answer$success)) {
    give_up()
    reason <- if (inherits(answer, "error")) conditionMessage(answer) else as.character(answer$value)
    stopf("Launch", "The fork server on host '%s' failed (%s). Use setup_strategy = \"parallel\" if this persists.",
          server$host, reason, extra_class = "PSOCKConnectionError", fields = list(host = server$host))
  }
  answer$value
}

fork_server_add_children <- function(server, pids, start_times) {
  server <- get0(server$key, envir = .package$fork_servers, inherits = FALSE)
  if (is.null(server)) return(invisible())
  server$children <- rbind(server$children, data.frame(pid = pids, start_time = start_times))
  assign(server$key, server, envir = .package$fork_servers)
}

# How forked workers ended, as told by their parent, the server: list(state, status,
# signal) like backend_child_state(); "unknown" when the server cannot tell.
fork_server_exit_states <- function(key, pids) {
  server <- get0(key, envir = .package$fork_servers, inherits = FALSE)
  unknown <- list(state = rep("unknown", length(pids)), status = rep(NA_integer_, length(pids)),
                  signal = rep(NA_integer_, length(pids)))
  if (is.null(server)) return(unknown)
  res <- tryCatch(fork_server_call(server, "state", as.integer(pids), timeout = 5, on_failure = "retire"),
                  error = function(e) NULL)
  if (is.null(res)) unknown else res
}

# Stop the servers among `keys` (and retired ones) that have no living worker left.
fork_servers_release <- function(keys) {
  retired <- .package$retired_fork_servers
  for (id in ls(retired)) {
    server <- get(id, envir = retired)
    if (!any(fork_server_children_alive(server) %in% c(TRUE, NA))) {
      rm(list = id, envir = retired)
      try(stop_nodes(list(server$node)), silent = TRUE)
    }
  }
  for (key in unique(keys)) {
    server <- get0(key, envir = .package$fork_servers, inherits = FALSE)
    if (is.null(server)) next
    alive <- fork_server_children_alive(server)
    server$children <- server$children[!(alive %in% FALSE), , drop = FALSE]
    if (nrow(server$children) > 0L) {
      assign(key, server, envir = .package$fork_servers)
    } else {
      fork_server_drop(server)
    }
  }
  invisible()
}

# TRUE/FALSE/NA per worker the server forked.
fork_server_children_alive <- function(server) {
  kids <- server$children
  if (is.null(kids) || nrow(kids) == 0L) return(logical(0))
  if (server$local) return(backend_probe(kids$pid, kids$start_time))
  tryCatch(backend_ssh_wait(backend_ssh_submit_probe(server$ssh, kids$pid, kids$start_time), 10,
                            server$host, "checking forked workers"), error = function(e) rep(NA, nrow(kids)))
}

# `base` for workers asked for with setup_strategy = "fork" on a host that cannot fork:
# they are launched as "parallel" workers (parallel's worker loop knows no "fork").
plain_launcher <- function(base) {
  launch <- base$launch
  base$launch <- function(options_list, port, launched) {
    options_list <- lapply(options_list, function(o) {
      if (identical(o$setup_strategy, "fork")) o$setup_strategy <- "parallel"
      o
    })
    launch(options_list, port, launched)
  }
  base
}

# The launcher of connect_workers() for a host with a fork server: the same interface as
# `base`, but the workers are forked by the server. Falls back to `base` when the host
# cannot fork.
fork_launcher <- function(base, opts, port, verbose = FALSE) {
  # The plain launcher already has the host's connection: keep it open while a refused
  # server is stopped.
  if (is.character(base$ssh_key)) {
    ssh_hold(base$ssh_key)
    on.exit(ssh_unhold(base$ssh_key))
  }
  server <- fork_server_for(opts, port, verbose = verbose)
  if (is.null(server)) return(plain_launcher(base))
  launcher <- base
  launcher$fork_server <- server$key
  launcher$launch <- function(options_list, port, launched) {
    worker_port <- port
    if (!server$local && isTRUE(opts$revtunnel)) {
      worker_port <- backend_ssh_wait(backend_ssh_submit_forward(server$ssh, port), opts$connectTimeout,
                                      server$host, "setting up the reverse tunnel")
    }
    requests <- lapply(seq_along(options_list), function(i) {
      o <- options_list[[i]]
      # Output that would go to /dev/null goes to a log of ours instead, removed with the
      # node, so that a worker's death can be explained with what it said last.
      out <- if (is.null(o$outfile)) "" else o$outfile
      if (identical(out, "/dev/null")) {
        out <- if (server$local) tempfile("parallelly-worker-", fileext = ".log") else {
          sprintf("/tmp/parallelly-worker-%s.log", substr(launched$token[i], 1L, 16L))
        }
        launched$log[i] <<- out
      }
      list(token = launched$token[i], master = o$master, port = worker_port, timeout = o$timeout,
           setup_timeout = o$connectTimeout, xdr = isTRUE(o$useXDR), outfile = out)
    })
    res <- fork_server_call(server, "fork", requests, timeout = opts$connectTimeout)
    launched$pid <- as.integer(res$pid)
    launched$start_time <- if (server$local) vapply(launched$pid, backend_start_time, numeric(1)) else res$start_time
    fork_server_add_children(server, launched$pid, launched$start_time)
    launched
  }
  if (server$local) {
    launcher$check <- function(launched, waiting) {
      if (length(waiting) == 0L) return(NULL)
      alive <- backend_probe(launched$pid[waiting], launched$start_time[waiting])
      dead <- which(alive %in% FALSE)
      if (length(dead) == 0L) return(NULL)
      k <- waiting[dead[1L]]
      st <- fork_server_exit_states(server$key, launched$pid[k])
      list(index = k, how = describe_exit(st$state[1L], st$status[1L], st$signal[1L]))
    }
    launcher$stop <- function(launched) {
      ok <- !is.na(launched$pid)
      terminate_forked(launched$pid[ok], launched$start_time[ok])
      remove_logs(launched$log)
    }
  }
  launcher
}

# Stop local forked workers (not our children: probed and signalled by PID and start time).
terminate_forked <- function(pids, start_times, grace = 1) {
  if (length(pids) == 0L) return(invisible(TRUE))
  running <- function() which(backend_probe(pids, start_times) %in% TRUE)
  for (k in running()) try(backend_signal(pids[k], tools::SIGTERM, start_time = start_times[k]), silent = TRUE)
  if (wait_until(function() length(running()) == 0L, timeout = grace)) return(invisible(TRUE))
  for (k in running()) try(backend_signal(pids[k], tools::SIGKILL, start_time = start_times[k]), silent = TRUE)
  invisible(wait_until(function() length(running()) == 0L, timeout = 2))
}

# --- In the fork server -----------------------------------------------------------------

# The first request: which namespaces the server had loaded before the master asked, so
# that forked workers can tell whether to unload parallelly.
fork_server_do_ready <- function(args, loaded) {
  .package$namespaces_before_fork <- loaded
  .Platform$OS.type == "unix" && isTRUE(backend_can_fork())
}

fork_server_do_state <- function(pids, loaded) {
  res <- backend_forked_state(pids)
  res$running <- NULL
  res
}

# Fork one worker per request; the server answers with their PIDs and start times (clock
# ticks since boot, as the remote probes use them).
fork_server_do_fork <- function(requests, loaded) {
  backend_forked_state(integer(0))  # reaps the workers that exited since last time
  pids <- integer(length(requests))
  server_tmp <- tempdir()
  for (i in seq_along(requests)) {
    pid <- backend_fork_worker()
    if (pid == 0) {
      # The child: never returns into the server's worker loop.
      worker_temp_dir(server_tmp)
      status <- tryCatch({
        forked_worker_main(requests[[i]])
        0L
      }, error = function(e) {
        message("Forked worker failed: ", conditionMessage(e))
        1L
      })
      quit(save = "no", status = status)
    }
    pids[i] <- as.integer(pid)
  }
  list(pid = pids, start_time = vapply(pids, proc_start_ticks, numeric(1)))
}

proc_start_ticks <- function(pid) {
  line <- tryCatch(readLines(sprintf("/proc/%d/stat", pid), n = 1L, warn = FALSE), error = function(e) "")
  fields <- strsplit(sub("^.*\\) ", "", line), " ", fixed = TRUE)[[1L]]
  if (length(fields) < 20L) NA_real_ else as.numeric(fields[20L])
}

# In a forked child, first of all: the backend left R without a temporary directory, and R
# makes a new one (and deletes that one, not the server's, when this worker exits). Should
# that fail, R still holds the server's path for its exit clean-up: end without R's exit.
worker_temp_dir <- function(server_tmp) {
  tmp <- tryCatch(tempdir(check = TRUE), error = function(e) NULL)
  if (!is.character(tmp) || identical(normalizePath(tmp, mustWork = FALSE), normalizePath(server_tmp, mustWork = FALSE)) ||
      !dir.exists(tmp)) {
    backend_exit_now(70L)
  }
  Sys.setenv(R_SESSION_TMPDIR = tmp)
}

# A forked child becomes a worker: drop what it inherited from the server, connect to the
# master and serve it, as parallel:::.workRSOCK() does in a fresh process.
forked_worker_main <- function(req) {
  while (sink.number() > 0L) sink()
  if (sink.number(type = "message") != 2L) sink(type = "message")
  ids <- getAllConnections()  # showConnections() would cost ~60 ms here
  for (id in ids[ids > 2L]) try(close(getConnection(id)), silent = TRUE)
  if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) {
    rm(list = ".Random.seed", envir = globalenv())
  }
  Sys.setenv(R_PARALLELLY_WORKER_TOKEN = req$token)
  # Everything needed from our namespace is fetched before it is unloaded: a lazy-loaded
  # object used afterwards would load it again.
  work_loop <- importParallel("workLoop")
  .package$forked_child <- TRUE
  # parallelly goes (a fresh worker has not loaded it); its imports stay: unloading 'tools'
  # would only make parallel's exit handler load it again, at ~30 ms a worker.
  if (!"parallelly" %in% .package$namespaces_before_fork) try(unloadNamespace("parallelly"), silent = TRUE)
  if (nzchar(req$outfile)) {
    out <- file(req$outfile, open = "a")
    sink(out)
    sink(out, type = "message")
  }
  cat(sprintf("starting worker pid=%d on %s:%d at %s\n", Sys.getpid(), req$master, req$port,
              format(Sys.time(), "%H:%M:%OS3")))
  deadline <- Sys.time() + req$setup_timeout
  repeat {
    con <- tryCatch(socketConnection(req$master, port = req$port, blocking = TRUE, open = "a+b",
                                     timeout = req$timeout), error = function(e) e)
    if (inherits(con, "connection")) break
    if (Sys.time() >= deadline) stop(con)
    Sys.sleep(0.05)
  }
  work_loop(structure(list(con = con), class = if (isTRUE(req$xdr)) "SOCKnode" else "SOCK0node"))
}
