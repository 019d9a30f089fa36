# Setting up the workers of many hosts at once. Each host (a batch of setup_batches(): the
# local workers, a remote host's, a Slurm job's) goes through its stages -- connect, start
# its fork server and wait for it, launch the workers -- without blocking the others: every
# stage submits its request and is polled in rounds, while the master accepts the workers
# of all hosts, as they come, on one listening socket. Each host has one deadline, its
# `connectTimeout` from the start of the call, so a host that fails costs its own timeout,
# never the sum over hosts; the error names every host that failed and why.

# Start the workers of `batches` (a list of option lists, each of one host, all with the
# same port) and return their nodes: a list of node lists, in the order of `batches`. On
# any failure or interrupt every launched process of every host is stopped.
connect_hosts <- function(batches, manual = FALSE, verbose = FALSE, while_starting = NULL) {
  port <- batches[[1L]][[1L]]$port
  if (port == 0L) stop_arg("port", "must be a port number in 1..65535 that the workers can be told: 0")
  start <- Sys.time()
  hosts <- lapply(batches, host_setup_new, start = start, manual = manual, verbose = verbose)
  server <- NULL
  pending <- list()
  done <- FALSE
  on.exit({
    if (!is.null(server)) close(server)
    for (p in pending) try(close(p$con), silent = TRUE)
    if (!done) for (h in hosts) host_setup_abandon(h)
  })
  all_options <- unlist(batches, recursive = FALSE)
  handshake <- without_bytecode(worker_handshake, baseenv())
  accept_timeout <- max(1, min(30, vapply(all_options, function(o) o$connectTimeout, numeric(1))))
  # The port listens once the first workers are on their way: a fresh R takes ~150 ms
  # before it connects, and opening the socket the first time in a session (R loads its
  # internet module) takes ~5-10 ms that their start need not wait for. (A worker that came
  # too early would be refused and try again: both entries retry until SETUPTIMEOUT.) A
  # running fork server's workers connect within milliseconds: then it listens first.
  listen <- function() open_server_socket(port, loopback = workers_connect_locally(all_options))
  if (length(ls(.package$fork_servers)) > 0L) server <- listen()
  first_round <- TRUE
  repeat {
    for (h in hosts) host_setup_step(h)
    if (is.null(server)) server <- listen()
    # Work of the caller's that can wait until the first workers are on their way (an error
    # of it abandons them all, as any error here does).
    if (first_round) {
      first_round <- FALSE
      if (is.function(while_starting)) while_starting()
      prefetch_post_connect_code()
    }
    open <- Filter(host_setup_open, hosts)
    if (length(open) == 0L) break
    socks <- c(list(server), lapply(pending, `[[`, "con"))
    # Hosts that only wait for their workers wake the loop by connecting; a worker that dies
    # before it connects is noticed within 0.1 s. Other stages are polled every 20 ms.
    waiting <- all(vapply(open, function(h) identical(h$stage, "accept"), logical(1)))
    ready <- socketSelect(socks, write = FALSE, timeout = if (waiting) 0.1 else 0.02)
    # Every connection waiting now (many hosts' workers arrive together), not one a round.
    while (ready[1L]) {
      newcomer <- accept_newcomer(server, handshake, timeout = accept_timeout)
      if (is.null(newcomer) && freeConnections() <= 0L) fail_no_connections()
      if (!is.null(newcomer)) pending[[length(pending) + 1L]] <- newcomer
      ready[1L] <- socketSelect(list(server), write = FALSE, timeout = 0)
    }
    for (k in rev(which(ready[-1L]))) {
      con <- pending[[k]]$con
      pending[[k]] <- NULL
      if (!host_setup_claim(hosts, con, manual)) {
        mdebug("Closed a connection that did not present a worker token")
        close(con)
      }
    }
    # Strangers that connect but never answer must not hold the loop forever.
    stale <- vapply(pending, function(p) difftime(Sys.time(), p$since, units = "secs") > 30, logical(1))
    for (k in rev(which(stale))) { close(pending[[k]]$con); pending[[k]] <- NULL }
  }
  failed <- Filter(function(h) !is.null(h$error), hosts)
  if (length(failed) > 0L) fail_hosts(failed, length(hosts))
  done <- TRUE
  lapply(hosts, function(h) h$nodes)
}

# The code the master runs once workers connect (their claim, their node records, the
# session-info round trip of makeClusterPSOCK(validate = TRUE)). A fresh session fetches
# each function from the package's lazy-load database on first use (~2-3 ms for these):
# done while the first workers start up instead of after they connect.
post_connect_code <- c("accept_newcomer", "read_handshake", "read_handshake_answer", "host_setup_claim",
                       "host_setup_settle", "host_setup_release", "new_node", "worker_key", "node_key",
                       "format_node_key", "node_options<-", "node_options", "node_entry", "set_node_entry",
                       "node_table", "as_pid", "forget_entries_finalizer", "add_cluster_session_info",
                       "node_session_info<-", "node_session_info", "node_state", "node_field", "current_node",
                       "node_xdr", "$.RichSOCKnode", "spin_for_input", "spin_limit", "spin_budget", "poll_cost")

prefetch_post_connect_code <- function() {
  ns <- environment(prefetch_post_connect_code)
  for (name in post_connect_code) get0(name, envir = ns, inherits = FALSE)
  invisible()
}

# One host's setup: its options, tokens, launcher and stage ("connect", "server", then
# "server_check" (a running server) or "server_start", "server_launch", "server_connect",
# "server_ready"; "launch", "launching", "accept", then "done" or "failed").
host_setup_new <- function(options_list, start, manual, verbose) {
  h <- new.env(parent = emptyenv())
  n <- length(options_list)
  h$options <- options_list
  h$first <- options_list[[1L]]
  h$port <- h$first$port
  h$manual <- manual
  h$verbose <- verbose
  h$name <- as.character(h$first$worker)
  h$deadline <- start + h$first$connectTimeout
  h$launched <- data.frame(pid = rep(NA_integer_, n), start_time = NA_real_, token = NA_character_,
                           log = NA_character_, stringsAsFactors = FALSE)
  for (i in seq_len(n)) h$launched$token[i] <- new_token()
  h$nodes <- vector("list", n)
  h$early <- list()
  h$stage <- "connect"
  h$launcher <- NULL
  h$error <- NULL
  h
}

host_setup_open <- function(h) !(h$stage %in% c("done", "failed"))

# Advance the host by as many stages as are ready now, never waiting.
host_setup_step <- function(h) {
  if (!host_setup_open(h)) return(invisible())
  res <- tryCatch({
    repeat {
      before <- h$stage
      host_setup_stages[[h$stage]](h)
      if (identical(h$stage, before) || !host_setup_open(h)) break
    }
    # The client's own connect timeout (connectTimeout) says more: it gets 5 s to tell.
    grace <- if (identical(h$stage, "connect")) 5 else 0
    if (host_setup_open(h) && Sys.time() >= h$deadline + grace) host_setup_timed_out(h)
    NULL
  }, error = function(e) e)
  if (inherits(res, "error")) host_setup_fail(h, res)
  invisible()
}

host_setup_stages <- list(
  # The built-in client connects on a thread of its own: all hosts' connects run at once.
  connect = function(h) {
    kind <- kind_for_options(h$first)
    if (is.function(kind$connect) && !isTRUE(h$connected)) {
      # Answered at once when the connection is held already.
      if (is.null(h$ticket)) h$ticket <- kind$connect(h$first, max(h$first$connectTimeout, 1))
      # The host wants a password or answers to prompts (OpenSSH's ssh can ask: SSH_ASKPASS, a
      # terminal), or only algorithms the built-in client lacks: OpenSSH's ssh, unless the
      # built-in client was chosen explicitly.
      external <- function(e) {
        if (!identical(h$first$ssh$choice, "auto")) stop(e)
        why <- if (inherits(e, "parallellyAuthPromptError")) "the host asks for a password or other prompts at login, which only OpenSSH's ssh can answer" else conditionMessage(e)
        h$options <- lapply(h$options, function(o) ssh_external_options(o, as.character(o$worker), o$ssh, why))
        h$first <- h$options[[1L]]
        h$ticket <- NULL
        "external"
      }
      polled <- tryCatch(host_setup_poll(h), parallellyAuthPromptError = external, parallellyNoCommonAlgorithmError = external)
      if (is.null(polled)) return()
      if (identical(polled, "external")) kind <- kind_for_options(h$first) else h$connected <- TRUE
    }
    h$launcher <- kind$launcher(h$first)
    h$base <- h$launcher
    # A setup that has the host's connection in hand holds it (see ssh_hold()).
    if (is.character(h$base$ssh_key)) {
      ssh_hold(h$base$ssh_key)
      h$held <- h$base$ssh_key
    }
    h$stage <- if (identical(h$first$setup_strategy, "fork") && !h$manual) "server" else "launch"
  },
  # setup_strategy = "fork": the host's running server, or a new one (R/forkServer.R).
  server = function(h) {
    local <- isTRUE(attr(h$first$worker, "localhost"))
    # A few local workers start faster plain (fork_server_pays(); a remote host's is asked
    # once no server of its runs: host_setup_new_server()); R/internals.R: no server
    # when the user turned R_TempDir off, or when this R's check failed and the server
    # would run here (a remote server checks its own R).
    if (local && !fork_server_pays(h$options)) return(host_setup_plain(h))
    if (internal_disabled("R_TempDir") || (local && !internal_ok("R_TempDir"))) {
      mdebugf("No fork server on '%s': R internal 'R_TempDir' is not used; launching the workers the usual way", h$name)
      return(host_setup_plain(h))
    }
    # Remote hosts: the held connection, or (a scheduler's task runs the server) kind:host.
    host_key <- if (local) "localhost" else if (is.character(h$base$ssh_key)) h$base$ssh_key else paste0(h$base$kind, ":", h$name)
    h$server_key <- fork_server_key(h$first, host_key)
    server <- get0(h$server_key, envir = .package$fork_servers, inherits = FALSE)
    if (!is.null(server)) {
      h$reuse <- server
      h$check <- fork_server_check_submit(server, min(fork_server_check_timeout, host_setup_left(h)))
      h$stage <- "server_check"
      return()
    }
    host_setup_new_server(h)
  },
  # A running server is reused once it is known to be alive; all hosts are asked at once.
  server_check = function(h) {
    server <- h$reuse
    alive <- fork_server_check_poll(h$check)
    if (is.null(alive)) return()
    h$check <- NULL
    h$reuse <- NULL
    if (!identical(alive, FALSE)) return(host_setup_use_server(h, server))
    fork_server_drop(server)
    host_setup_new_server(h)
  },
  server_start = function(h) {
    if (fork_refused(h$server_key)) return(host_setup_plain(h))
    h$server_options <- fork_server_options(h$first)
    h$server_launched <- h$launched[1L, , drop = FALSE]
    h$server_launched[1L, ] <- list(NA_integer_, NA_real_, new_token(), NA_character_)
    h$poll <- launcher_start(h$base, list(h$server_options), h$port, h$server_launched)
    h$cancel <- attr(h$poll, "cancel")
    h$stage <- "server_launch"
  },
  server_launch = function(h) {
    launched <- h$poll()
    if (is.null(launched)) return()
    h$poll <- NULL
    h$cancel <- NULL
    h$server_launched <- launched
    h$stage <- "server_connect"
    host_setup_settle(h)
  },
  # The server connects like a worker (host_setup_claim() makes it h$server_node).
  server_connect = function(h) {
    if (is.null(h$server_node)) {
      dead <- h$base$check(h$server_launched, 1L)
      if (!is.null(dead)) fail_worker_exited(h$server_options, h$server_launched, dead$how, h$port, h$base)
      return()
    }
    node <- h$server_node
    h$server <- list(key = h$server_key, node = node, local = isTRUE(attr(h$first$worker, "localhost")),
                     host = h$name, ssh = attr(node, "process")$ssh)
    h$server_node <- NULL
    h$base$connected(list(node))
    fork_server_send(h$server, "ready", list())
    h$stage <- "server_ready"
  },
  server_ready = function(h) {
    answer <- fork_server_receive(h$server)
    if (is.null(answer)) return()
    server <- h$server
    if (!isTRUE(answer$success) || !isTRUE(answer$value)) {
      # No parallelly (or one that cannot fork) on that host: launch its workers as usual.
      mdebugf("Host '%s' cannot fork workers; launching them the usual way", server$host)
      fork_refuse(server$key, answered = isTRUE(answer$success))
      h$server <- NULL
      stop_nodes(list(server$node))
      return(host_setup_plain(h))
    }
    server$children <- data.frame(pid = integer(0), start_time = numeric(0))
    assign(server$key, server, envir = .package$fork_servers)
    h$server <- NULL
    host_setup_use_server(h, server)
  },
  launch = function(h) {
    if (h$manual) {
      h$stage <- "accept"
      return()
    }
    h$poll <- launcher_start(h$launcher, h$options, h$port, h$launched)
    h$cancel <- attr(h$poll, "cancel")
    h$stage <- "launching"
  },
  launching = function(h) {
    launched <- h$poll()
    if (is.null(launched)) return()
    h$poll <- NULL
    h$cancel <- NULL
    h$launched <- launched
    h$stage <- "accept"
    host_setup_settle(h)
  },
  accept = function(h) {
    waiting <- which(vapply(h$nodes, is.null, logical(1)))
    if (length(waiting) == 0L) {
      for (node in h$nodes) socketTimeout(node$con, timeout = node_options(node)$timeout)
      h$launcher$connected(h$nodes)
      host_setup_release(h)
      h$stage <- "done"
      return()
    }
    if (h$manual) return()
    waiting <- waiting[!is.na(h$launched$pid[waiting])]
    dead <- h$launcher$check(h$launched, waiting)
    if (!is.null(dead)) fail_worker_exited(h$options[[dead$index]], h$launched[dead$index, ], dead$how, h$port, h$launcher)
  }
)

# Seconds a running fork server has to show it is alive (within the host's connectTimeout).
fork_server_check_timeout <- 5

host_setup_new_server <- function(h) {
  # With "auto", a remote host's kind may find a new server not worth it for so few workers.
  if (!isTRUE(attr(h$first$worker, "localhost")) && !fork_server_pays(h$options)) return(host_setup_plain(h))
  h$stage <- "server_start"
}

# Seconds until the host's deadline.
host_setup_left <- function(h) max(as.double(difftime(h$deadline, Sys.time(), units = "secs")), 0.05)

host_setup_use_server <- function(h, server) {
  h$launcher <- fork_launcher(h$base, h$first, server)
  h$stage <- "launch"
}

host_setup_plain <- function(h) {
  h$launcher <- plain_launcher(h$base)
  h$stage <- "launch"
}

# The answer to the host's pending SSH request (h$ticket), NULL while it is pending.
host_setup_poll <- function(h) {
  res <- tryCatch(backend_ssh_poll(h$ticket), parallellyError = function(e) { e$host <- h$name; stop(e) })
  if (!is.null(res)) h$ticket <- NULL
  res
}

# A worker (or fork server) presenting a token of one of `hosts` becomes its node. FALSE
# for a stranger.
host_setup_claim <- function(hosts, con, manual) {
  open <- Filter(host_setup_open, hosts)
  tokens <- unlist(lapply(open, function(h) {
    free <- vapply(h$nodes, is.null, logical(1))
    free[vapply(h$early, `[[`, integer(1), "slot")] <- FALSE
    h$launched$token[free]
  }))
  servers <- unlist(lapply(open, function(h) {
    if (h$stage %in% c("server_launch", "server_connect") && is.null(h$server_node)) h$server_launched$token
  }))
  answer <- read_handshake(con, c(tokens, servers), free = seq_along(c(tokens, servers)), manual = manual)
  if (is.null(answer)) return(FALSE)
  token <- unname(c(tokens, servers)[answer$slot])
  for (h in open) {
    slot <- if (manual) which(vapply(h$nodes, is.null, logical(1)))[1L] else match(token, h$launched$token)
    if (is.na(slot) && identical(token, h$server_launched$token)) slot <- 0L
    if (is.na(slot)) next
    # A worker may connect before its launch is answered (the PID and start time it needs
    # come with the answer): it waits in `early` until then.
    h$early[[length(h$early) + 1L]] <- list(slot = slot, con = con, pid = answer$pid)
    host_setup_settle(h)
    return(TRUE)
  }
  FALSE
}

# Connections of `h` whose launch is answered become its nodes (slot 0: its fork server).
host_setup_settle <- function(h) {
  keep <- list()
  for (e in h$early) {
    if (e$slot == 0L && identical(h$stage, "server_connect")) {
      h$server_node <- new_node(e$con, h$server_options, pid = e$pid, launched = h$server_launched,
                                port = h$port, launcher = h$base)
    } else if (e$slot > 0L && (identical(h$stage, "accept") || h$manual)) {
      h$nodes[[e$slot]] <- new_node(e$con, h$options[[e$slot]], pid = e$pid, launched = h$launched[e$slot, ],
                                    port = h$port, launcher = h$launcher)
    } else {
      keep[[length(keep) + 1L]] <- e
    }
  }
  h$early <- keep
  invisible()
}

host_setup_timed_out <- function(h) {
  timeout <- h$first$connectTimeout
  if (identical(h$stage, "accept")) fail_connect_timeout(h$options, h$nodes, h$launched, timeout, h$launcher)
  what <- switch(h$stage,
    connect = "connecting",
    server_check = "checking that its running fork server is alive",
    server = , server_start = , server_launch = , server_connect = "starting its fork server",
    server_ready = "asking its fork server whether it can fork",
    "launching workers")
  if (identical(h$stage, "launching") && !is.null(h$launcher$fork_server)) what <- "forking workers"
  stopf("Timeout", "Host '%s' did not answer within %g seconds (%s; argument 'connectTimeout')", h$name, timeout, what,
        extra_class = "PSOCKConnectionError", fields = list(host = h$name))
}

# A host failed: its processes are stopped now (the other hosts go on), the error kept.
host_setup_fail <- function(h, error) {
  if (is.null(error$host)) error$host <- h$name
  h$error <- error
  host_setup_abandon(h, answering = !inherits(error, "parallellyTimeoutError"))
  h$stage <- "failed"
}

# Stop whatever the host's setup started (on failure, or when the whole setup gives up).
# A host that did not answer in time (`answering = FALSE`) is not waited for: its fork
# server, asked to fork and silent, is retired rather than stopped, which would wait out a
# grace period per host while the other hosts wait too.
host_setup_abandon <- function(h, answering = TRUE) {
  if (isTRUE(h$abandoned)) return(invisible())
  h$abandoned <- TRUE
  if (!is.null(h$ticket)) try(backend_ssh_cancel(h$ticket), silent = TRUE)
  if (!is.null(h$check)) try(fork_server_check_cancel(h$check), silent = TRUE)
  if (is.function(h$cancel)) try(h$cancel(), silent = TRUE)
  for (node in h$nodes) if (!is.null(node)) try(close(node$con), silent = TRUE)
  for (e in h$early) try(close(e$con), silent = TRUE)
  if (!is.null(h$launcher)) try(stop_launched(h$launcher, h$options, h$launched), silent = TRUE)
  # A fork server that was asked and has not answered cannot be talked to any more.
  if (!is.null(h$server)) try(fork_server_drop(h$server), silent = TRUE)
  if (identical(h$stage, "launching") && is.character(h$launcher$fork_server)) {
    server <- get0(h$launcher$fork_server, envir = .package$fork_servers, inherits = FALSE)
    if (!is.null(server)) try(if (answering) fork_server_drop(server) else fork_server_retire(server), silent = TRUE)
  }
  if (!is.null(h$server_node)) try(stop_nodes(list(h$server_node)), silent = TRUE)
  if (h$stage %in% c("server_launch", "server_connect") && !is.null(h$base)) {
    try(stop_launched(h$base, list(h$server_options), h$server_launched), silent = TRUE)
  }
  host_setup_release(h)
  # A connection opened for this setup alone is not kept.
  if (is.character(h$base$ssh_key)) try(ssh_close_if_unused(h$base$ssh_key), silent = TRUE)
  invisible()
}

host_setup_release <- function(h) {
  if (is.character(h$held)) ssh_unhold(h$held)
  h$held <- NULL
}

# Start a launcher's launch without waiting for it: a function that returns the filled-in
# `launched` once the launch is done, NULL while it is under way. Launchers that can submit
# their request and be polled (remote hosts, fork servers) have `submit()`; the others
# launch at once.
launcher_start <- function(launcher, options_list, port, launched) {
  if (is.function(launcher$submit)) return(launcher$submit(options_list, port, launched))
  launched <- launcher$launch(options_list, port, launched)
  function() launched
}

# Wait (at most `timeout` seconds) for the launch that `poll` (from a launcher's submit())
# watches; on timeout its request is withdrawn.
launcher_wait <- function(poll, timeout, host, what) {
  deadline <- Sys.time() + timeout
  launched <- NULL
  on.exit(if (is.null(launched) && is.function(attr(poll, "cancel"))) attr(poll, "cancel")())
  repeat {
    launched <- poll()
    if (!is.null(launched)) return(launched)
    if (Sys.time() >= deadline) {
      stopf("Timeout", "Host '%s' did not answer within %g seconds (%s)", host, timeout, what,
            extra_class = "PSOCKConnectionError", fields = list(host = host))
    }
    Sys.sleep(0.01)
  }
}

# A worker is waiting to connect but R has no connection left for it (each worker takes
# one, and so does each host's fork server): fail now, not at connectTimeout.
fail_no_connections <- function() {
  stopf("Launch",
    "Cannot accept more workers: all %d connections of this R session are in use (each worker takes one, and so does the fork server of each host). Start fewer workers, use setup_strategy = \"parallel\" (no fork servers), or start R (>= 4.4) with --max-connections.",
    availableConnections(), extra_class = "PSOCKConnectionError")
}

# The setup failed on some hosts: the one host's error as it is, or one error that names
# every host that failed and why (a PSOCKConnectionError with the first's classes; the
# errors in field `errors`, the hosts in field `host`).
fail_hosts <- function(failed, total) {
  if (length(failed) == 1L) stop(failed[[1L]]$error)
  errors <- lapply(failed, function(h) h$error)
  names <- vapply(failed, function(h) h$name, character(1))
  lines <- vapply(seq_along(errors), function(k) {
    sprintf("\n * Host '%s': %s", names[k], gsub("\n", "\n   ", conditionMessage(errors[[k]])))
  }, character(1))
  cond <- errors[[1L]]
  cond$message <- sprintf("Cluster setup failed on %d of %d hosts (every worker was stopped):%s",
                          length(failed), total, paste(lines, collapse = ""))
  cond$host <- names
  cond$errors <- stats::setNames(errors, names)
  cond$call <- NULL
  if (!inherits(cond, "PSOCKConnectionError")) class(cond) <- c("PSOCKConnectionError", class(cond))
  stop(cond)
}
