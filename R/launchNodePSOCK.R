# Launching local workers and accepting their connections.
#
# The master listens on a server socket; the Rust backend starts each worker process (no
# shell) with a one-time token in its environment. When a worker connects, the master sends
# it a handshake call that returns the worker's PID and token; only a connection that
# presents the token of a worker we launched becomes a node, so a stranger that connects
# first is never taken for a worker. While waiting, the master watches the launched
# processes: a worker that dies before connecting fails the setup at once, with its exit
# status and last output, instead of after `connectTimeout`.

# Launch one node from its options: sequential launch (with tries), manual or dryrun.
launchNodePSOCK <- function(options, verbose = FALSE) {
  if (options$setup_strategy %in% c("parallel", "fork") && (options$manual || options$dryrun)) {
    options$setup_strategy <- "sequential"
  }
  if (options$dryrun || options$manual) {
    if (!options$quiet) print_manual_instructions(options)
    if (options$dryrun) return(invisible(NULL))
  }
  connect_workers(list(options), manual = options$manual, verbose = verbose)[[1L]]
}

print_manual_instructions <- function(options) {
  cat(strrep("-", 70L), "\n", sep = "")
  if (isTRUE(attr(options$worker, "localhost"))) {
    cat(sprintf("Manually, start worker #%d on local machine '%s' with:\n\n  %s\n\n",
                options$rank, options$worker, options$cmd))
  } else {
    cat(sprintf("Manually, (i) login into external machine '%s':\n\n  %s\n\n", options$worker, options$rsh_call))
    cat(sprintf("and (ii) start worker #%d from there:\n\n  %s\n\n", options$rank, options$cmd))
    cat(sprintf("Alternatively, start worker #%d from the local machine by combining both steps in a single call:\n\n  %s\n\n",
                options$rank, options$local_cmd))
  }
}

# The handshake a connecting worker runs as its first task. Its environment is the base
# namespace, so the worker needs no package of ours to run it.
worker_handshake <- function() {
  token <- Sys.getenv("R_PARALLELLY_WORKER_TOKEN")
  Sys.unsetenv("R_PARALLELLY_WORKER_TOKEN")
  list(pid = Sys.getpid(), token = token)
}
environment(worker_handshake) <- baseenv()

# 128 bits from the operating system's random source (not R's RNG: guessable from the
# time and PID, and .Random.seed must stay untouched anyway).
new_token <- function() {
  con <- file("/dev/urandom", open = "rb", raw = TRUE)
  on.exit(close(con))
  paste(as.character(readBin(con, what = "raw", n = 16L)), collapse = "")
}

# The master's listening socket. R's serverSocket() binds every interface; with
# `loopback`, the backend re-binds it to 127.0.0.1 so that only this machine can connect
# (should that fail, the socket is opened again on every interface).
open_server_socket <- function(port, loopback = FALSE) {
  open <- function() tryCatch(serverSocket(port), error = function(e) {
    stopf("Port",
      "Cannot listen on port %d (argument 'port'): %s. The port is probably used by another process; choose another port, or use port = \"random\".",
      port, conditionMessage(e), fields = list(port = port))
  })
  server <- open()
  if (loopback && !listen_socket_usable()) loopback <- FALSE
  if (loopback) {
    ok <- tryCatch(backend_rebind_loopback(port), error = function(e) e)
    if (!isTRUE(ok)) {
      # Never silently: every worker connects from this machine, and the user may count on
      # no other machine reaching the port.
      why <- if (inherits(ok, "error")) conditionMessage(ok) else "R's listening socket was not found"
      warning(sprintf("Could not make the master's socket on port %d listen on 127.0.0.1 only (%s); it listens on all interfaces (workers still need their one-time token to join)",
                      port, why), call. = FALSE)
      close(server)
      server <- open()
    }
  }
  server
}

# Whether the listening socket may be re-bound (R/internals.R, "listen_socket"). When this
# R's check failed, the user hears it once a session (never silently: they may count on no
# other machine reaching the port); when they turned it off themselves, not at all.
listen_socket_usable <- function() {
  if (internal_ok("listen_socket")) return(TRUE)
  if (!internal_disabled("listen_socket") && !isTRUE(.package$listen_socket_warned)) {
    .package$listen_socket_warned <- TRUE
    warning(sprintf("The master's socket listens on all interfaces, not on 127.0.0.1 only: re-binding it failed its check on this R (%s); see parallelly:::r_internals() (workers still need their one-time token to join)",
                    .package$internals$listen_socket$why), call. = FALSE)
  }
  FALSE
}

# Whether every worker of `options_list` reaches the master from this machine: local
# workers told to connect to localhost, or remote ones through a reverse tunnel (whose far
# end connects to 127.0.0.1).
workers_connect_locally <- function(options_list) {
  all(vapply(options_list, function(o) {
    o$master %in% c("localhost", "127.0.0.1") && (isTRUE(attr(o$worker, "localhost")) || isTRUE(o$revtunnel))
  }, logical(1)))
}

# Start the workers of `options_list` (all on one host, all with the same port) and return
# their nodes, in order. On any failure or interrupt, every launched process is stopped.
# Many hosts at once: connect_hosts() (R/setupHosts.R).
connect_workers <- function(options_list, manual = FALSE, verbose = FALSE) {
  connect_hosts(list(options_list), manual = manual, verbose = verbose)[[1L]]
}

# Accept a connection and send it the handshake; list(con, since), or NULL if that failed.
accept_newcomer <- function(server, handshake, timeout) {
  con <- tryCatch(
    # "no-delay" (TCP_NODELAY): without it, a message over one segment waits for the
    # worker's delayed ACK (~40 ms) before its last part leaves.
    socketAccept(server, blocking = TRUE, open = "a+b", timeout = timeout, options = "no-delay"),
    error = function(e) NULL
  )
  if (is.null(con)) return(NULL)
  msg <- list(type = "EXEC", data = list(fun = handshake, args = list(), return = TRUE, tag = NULL), tag = NULL)
  ok <- tryCatch({
    serialize(msg, con, xdr = FALSE)
    TRUE
  }, error = function(e) FALSE)
  if (!ok) {
    close(con)
    return(NULL)
  }
  list(con = con, since = Sys.time())
}

# The answer to the handshake on `con`: list(slot, pid) for the worker whose token it
# presents (a worker started by hand cannot know one: it takes the first `free` slot), or
# NULL for a stranger.
read_handshake <- function(con, tokens, free, manual) {
  value <- read_handshake_answer(con)
  if (is.null(value)) return(NULL)
  slot <- match(value$token, tokens)
  if (manual) slot <- free[1L]
  if (is.na(slot) || !(slot %in% free)) return(NULL)
  list(slot = slot, pid = value$pid)
}

# The answer's list(pid, token), or NULL. Whoever connects first sends these bytes, so they
# are never unserialize()d: the backend's parser of the one shape a worker sends says how
# many bytes to read next, and R reads exactly those (what follows stays on the node's
# stream). A stranger gets `budget` seconds in all, and waits of at most 1 s for each piece
# (a worker sends its answer at once), then it is dropped.
read_handshake_answer <- function(con, budget = 5) {
  deadline <- as.double(Sys.time()) + budget
  old <- socketTimeout(con, timeout = 1)
  on.exit(socketTimeout(con, timeout = old))
  bytes <- raw()
  tryCatch(repeat {
    step <- .Call(wrap__rs_handshake_step, bytes)
    if (is.list(step)) return(step)
    if (is.character(step)) {
      mdebugf("Dropped a connection that sent no worker's answer: %s", step)
      return(NULL)
    }
    chunk <- if (as.double(Sys.time()) < deadline) readBin(con, what = "raw", n = step)
    if (length(chunk) < step) {
      mdebugf("Dropped a connection whose answer did not arrive in time (%d bytes)", length(bytes) + length(chunk))
      return(NULL)
    }
    bytes <- c(bytes, chunk)
  }, error = function(e) NULL)
}

new_node <- function(con, options, pid, launched, port, launcher) {
  options$port <- port
  options$cmd <- worker_command_line(options, port)
  options$pidfile <- NULL
  launcher_pid <- launched$pid
  start_time <- if (!is.na(launcher_pid) && identical(pid, launcher_pid)) launched$start_time else launcher$start_time(pid)
  process <- list(pid = pid, start_time = start_time, launcher_pid = launcher_pid,
                  log = launched$log, ssh = launcher$ssh_key, kind = launcher$kind)
  # What a kind's launcher recorded beyond these (a Slurm step, say) stays with the node.
  extra <- setdiff(names(launched), c("pid", "start_time", "token", "log"))
  for (field in extra) process[[field]] <- launched[[field]]
  process$fork_server <- launcher$fork_server
  process$key <- worker_key(launcher, options, pid, start_time, launcher_pid)
  node <- list(con = con, host = options$worker, rank = options$rank)
  node <- structure(node,
    process = process,
    class = c("RichSOCKnode", if (isTRUE(options$useXDR)) "SOCKnode" else "SOCK0node")
  )
  node_options(node) <- options
  node
}

# The key of a worker in this package's tables (format_node_key()): it always names the
# host. A worker started by a client process of ours (an external ssh, srun, qrsh) has no
# start time we can read; its client's PID stands in, so two hosts whose workers share a
# PID never collide.
worker_key <- function(launcher, options, pid, start_time, launcher_pid) {
  if (!is.null(launcher$ssh_key)) return(format_node_key(launcher$ssh_key, pid, start_stamp(start_time)))
  if (launcher$remote) {
    return(format_node_key(paste0(launcher$kind, ":", as.character(options$worker)), pid,
                           paste0("client", as.integer(launcher_pid))))
  }
  format_node_key("localhost", pid, start_stamp(start_time))
}

# A launched worker exited before connecting: fail at once, with how it ended and its output.
fail_worker_exited <- function(opts, launched, how, port, launcher) {
  output <- launch_output(launcher, opts, launched)
  where <- if (launcher$remote) sprintf("remote machine '%s'", opts$worker) else sprintf("local machine '%s'", opts$worker)
  # Remote workers behind a reverse tunnel connect to the tunnel's port on their host.
  tunnel <- if (is.function(launcher$worker_port)) launcher$worker_port() else NULL
  to <- if (is.numeric(tunnel) && length(tunnel) == 1L && tunnel != port) {
    sprintf("the master through the reverse tunnel (port %d on that host, port %d here)", tunnel, port)
  } else {
    sprintf("the master on port %d", port)
  }
  stopf("Launch",
    "Failed to launch R worker #%d on %s: the worker process (PID %d) %s before it connected to %s.%s\n * Worker launch command: %s",
    opts$rank, where, launched$pid, how, to, format_output(output, opts), opts$cmd,
    extra_class = "PSOCKConnectionError",
    fields = list(host = as.character(opts$worker), pid = launched$pid, rank = opts$rank, exit = how, output = output))
}

fail_connect_timeout <- function(options_list, nodes, launched, connect_timeout, launcher) {
  n <- length(nodes)
  waiting <- which(vapply(nodes, is.null, logical(1)))
  failed <- length(waiting)
  where <- if (launcher$remote) "remote" else "local"
  head <- if (n == 1L) {
    sprintf("Failed to connect to R worker #%d on %s machine '%s' within %.1f seconds (argument 'connectTimeout').",
            options_list[[1L]]$rank, where, options_list[[1L]]$worker, connect_timeout)
  } else if (failed == 1L) {
    sprintf("Cluster setup failed (connectTimeout=%.1f seconds). %d worker of %d failed to connect.", connect_timeout, failed, n)
  } else {
    sprintf("Cluster setup failed (connectTimeout=%.1f seconds). %d of %d workers failed to connect.", connect_timeout, failed, n)
  }
  details <- vapply(waiting, function(i) {
    output <- launch_output(launcher, options_list[[i]], launched[i, , drop = FALSE])
    sprintf("\n * Worker #%d (PID %s) was still running but had not connected.%s",
            options_list[[i]]$rank, launched$pid[i], format_output(output, options_list[[i]]))
  }, character(1))
  stopf("Timeout", "%s%s\n * The workers were stopped. Increase 'connectTimeout' if the workers need longer to start.",
        head, paste(details, collapse = ""),
        extra_class = "PSOCKConnectionError",
        fields = list(host = as.character(options_list[[1L]]$worker), pid = launched$pid[waiting]))
}

describe_exit <- function(state, status, signal) {
  switch(state,
    exited = sprintf("exited with status %d", status),
    signalled = sprintf("was killed by signal %d (%s)", signal, signal_name(signal)),
    gone = "exited",
    "is no longer running"
  )
}

signal_name <- function(signal) {
  names <- c(`1` = "SIGHUP", `2` = "SIGINT", `3` = "SIGQUIT", `4` = "SIGILL", `6` = "SIGABRT",
             `7` = "SIGBUS", `8` = "SIGFPE", `9` = "SIGKILL", `11` = "SIGSEGV", `13` = "SIGPIPE",
             `14` = "SIGALRM", `15` = "SIGTERM", `10` = "SIGUSR1", `12` = "SIGUSR2")
  name <- names[as.character(signal)]
  if (is.na(name)) sprintf("signal %d", signal) else unname(name)
}

log_tail <- function(log, n = 10L) {
  if (is.na(log) || !nzchar(log) || !file.exists(log)) return(character(0))
  lines <- tryCatch(readLines(log, warn = FALSE), error = function(e) character(0))
  utils::tail(lines, n)
}

format_output <- function(output, opts) {
  if (length(output) == 0L) {
    if (is.null(opts$outfile)) return("")
    return(" It wrote no output before that; set 'outfile = NULL' to see everything it writes.")
  }
  sprintf(" Its last output was:\n   %s", paste(output, collapse = "\n   "))
}

remove_logs <- function(logs) {
  logs <- logs[!is.na(logs) & nzchar(logs)]
  if (length(logs) > 0L) unlink(logs)
}

# Poll `condition` in short slices until it is TRUE or `timeout` seconds have passed.
wait_until <- function(condition, timeout, interval = 0.02) {
  deadline <- Sys.time() + timeout
  repeat {
    if (condition()) return(TRUE)
    if (Sys.time() >= deadline) return(FALSE)
    Sys.sleep(interval)
  }
}
