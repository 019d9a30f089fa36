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
# The key is a short name for that specification ("fork-server-3 on <host>"): forked nodes
# carry it, and nodes are kept small (future hashes the cluster for every future).
fork_server_key <- function(opts, host_key) {
  spec <- worker_launch_spec(opts, port = 0L)
  setup <- grepl("^(MASTER|PORT|OUT|TIMEOUT|SETUPTIMEOUT|XDR|SETUPSTRATEGY)=", spec$args)
  full <- paste(c(host_key, spec$program, spec$args[!setup], names(spec$env), spec$env, spec$unset,
                  opts$renice), collapse = "\r")
  names <- .package$fork_server_names
  key <- get0(full, envir = names, inherits = FALSE)
  if (is.null(key)) {
    key <- sprintf("fork-server-%d on %s", length(ls(names)) + 1L, host_key)
    assign(full, key, envir = names)
  }
  key
}

# Whether the workers of `options_list` (all of one launch) are best forked. A server
# costs one R start-up plus loading this package in it before its first fork; workers started
# plain at once, each on an idle core, cost one R start-up in all. So with "auto" and no
# server running yet for this launch specification, a setup of no more local workers than
# this machine has cores (and at most `fork_plain_max`, as plain workers share no memory)
# starts them plain. Explicitly asked for, it is "fork". On other hosts (asked only when no
# server runs there for this launch) the host's kind decides with its optional fork_pays(n)
# (R/nodeKind.R; default "fork"). The cores are the ones this process may run on (affinity,
# cgroup quota), not availableCores(): that may run shells (detectCores(), nproc), ~40 ms
# before the first worker is launched.
fork_plain_max <- 4L

fork_server_pays <- function(options_list) {
  first <- options_list[[1L]]
  if (!isTRUE(first$setup_auto)) return(TRUE)
  if (!isTRUE(attr(first$worker, "localhost"))) {
    pays <- kind_for_options(first)$fork_pays
    return(!is.function(pays) || isTRUE(pays(length(options_list))))
  }
  if (length(options_list) > fork_plain_max) return(TRUE)
  key <- fork_server_key(first, "localhost")
  if (exists(key, envir = .package$fork_servers, inherits = FALSE)) return(TRUE)
  length(options_list) > 1L && length(options_list) > backend_usable_cores()
}

# The options that start the server for `opts` (R/setupHosts.R starts it, asks it whether
# it can fork, and registers it in .package$fork_servers under fork_server_key()).
fork_server_options <- function(opts) {
  server_opts <- opts
  server_opts$setup_strategy <- "parallel"
  # The workers' own outfile is theirs to open; the server's output is captured, or shares
  # this session's when the workers do (then no thread drains it).
  if (!is.null(server_opts$outfile)) server_opts$outfile <- "/dev/null"
  server_opts$worker_args <- worker_r_args(server_opts)
  server_opts
}

# A host that answered that it cannot fork is not asked again for 30 minutes (its
# parallelly may be updated meanwhile); one whose server failed or did not answer in time,
# for a minute: a slow or busy host is not written off for the whole session.
fork_refusal_lifetime <- function(answered) if (answered) 1800 else 60

fork_refuse <- function(key, answered) {
  assign(key, Sys.time() + fork_refusal_lifetime(answered), envir = .package$fork_refusals)
}

fork_refused <- function(key) {
  until <- get0(key, envir = .package$fork_refusals, inherits = FALSE)
  if (is.null(until)) return(FALSE)
  if (Sys.time() < until) return(TRUE)
  rm(list = key, envir = .package$fork_refusals)
  FALSE
}

# Whether a running server is alive, asked without waiting, so that a setup asks all its hosts
# at once (R/setupHosts.R): a check that fork_server_check_poll() answers.
fork_server_check_submit <- function(server, timeout) {
  check <- new.env(parent = emptyenv())
  check$deadline <- Sys.time() + timeout
  id <- node_identity(server$node)
  if (!isTRUE(isConnectionValid(server$node$con))) {
    check$answer <- FALSE
  } else if (server$local) {
    check$answer <- backend_probe(id$pid, id$start_time)
  } else {
    check$ticket <- tryCatch(backend_ssh_submit_probe(server$ssh, id$pid, id$start_time, timeout = timeout),
                             error = function(e) NULL)
    if (is.null(check$ticket)) check$answer <- NA
  }
  check
}

# TRUE (alive), FALSE (gone), NA (no answer within the check's timeout: taken as alive, as a
# busy host's server is), or NULL while the answer is pending.
fork_server_check_poll <- function(check) {
  if (!is.null(check$answer)) return(check$answer)
  alive <- tryCatch(backend_ssh_poll(check$ticket), error = function(e) NA)
  if (is.null(alive) && Sys.time() >= check$deadline) {
    fork_server_check_cancel(check)
    alive <- NA
  }
  if (!is.null(alive)) check$answer <- as.logical(alive[1L])
  check$answer
}

fork_server_check_cancel <- function(check) {
  if (!is.null(check$ticket)) backend_ssh_cancel(check$ticket)
  check$ticket <- NULL
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

fork_server_drop <- function(server, background = FALSE) {
  if (exists(server$key, envir = .package$fork_servers, inherits = FALSE)) {
    rm(list = server$key, envir = .package$fork_servers)
  }
  fork_server_shutdown(server, background)
}

# Send one request to a server and wait (interruptibly, at most `timeout` seconds) for the
# answer. A server that does not answer (or is interrupted while it should) can no longer
# be talked to -- a late answer would be read by the next request: it is stopped with its
# workers (`on_failure = "stop"`, for fork requests, whose workers may be half made), or
# retired (`"retire"`: no new work, stopped once its workers are gone).
fork_server_call <- function(server, what, args, timeout = 30, on_failure = c("stop", "retire")) {
  on_failure <- match.arg(on_failure)
  answered <- FALSE
  give_up <- function() if (on_failure == "stop") fork_server_drop(server) else fork_server_retire(server)
  on.exit(if (!answered) try(give_up(), silent = TRUE))
  answer <- tryCatch({
    fork_server_send(server, what, args)
    deadline <- Sys.time() + timeout
    repeat {
      answer <- fork_server_receive(server, wait = 0.1)
      if (!is.null(answer)) break
      if (Sys.time() >= deadline) {
        stopf("Timeout", "The fork server on host '%s' did not answer within %g seconds", server$host, timeout,
              fields = list(host = server$host))
      }
    }
    answer
  }, error = function(e) e)
  answered <- TRUE
  fork_server_value(server, answer, give_up)
}

# Send a request to a server; its answer is read by fork_server_receive().
fork_server_send <- function(server, what, args) {
  serialize(fork_server_request(what, args), server$node$con, xdr = node_xdr(server$node))
  invisible()
}

# The server's answer if it has come (waiting at most `wait` seconds), else NULL; an error
# (a condition object) if the connection failed.
fork_server_receive <- function(server, wait = 0) {
  con <- server$node$con
  tryCatch({
    if (!socketSelect(list(con), write = FALSE, timeout = wait)) return(NULL)
    unserialize(con)
  }, error = function(e) e)
}

# The value of an answer; for an error or a failure, `give_up()` and an error naming the host.
fork_server_value <- function(server, answer, give_up) {
  if (inherits(answer, "error") || !isTRUE(answer$success)) {
    give_up()
    reason <- if (inherits(answer, "error")) conditionMessage(answer) else as.character(answer$value)
    stopf("Launch", "The fork server on host '%s' failed (%s). Use setup_strategy = \"parallel\" if this persists.",
          server$host, reason, extra_class = "PSOCKConnectionError", fields = list(host = server$host))
  }
  answer$value
}

# The EXEC message that asks a server to run fork_server_do_<what>(args).
fork_server_request <- function(what, args) {
  list(type = "EXEC", data = list(fun = fork_server_dispatch, args = list(what, args), return = TRUE, tag = NULL),
       tag = NULL)
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
  run_stages(list(fork_server_exit_states_stage(key, pids)))[[1L]]
}

# The same as a stage (R/nodeKind.R): the request goes out at once, the answer is polled, so
# that the servers of many hosts are asked together. A server that does not answer within
# `timeout` seconds (or the caller's time left) is retired, as by fork_server_call().
fork_server_exit_states_stage <- function(key, pids, timeout = 5) {
  server <- get0(key, envir = .package$fork_servers, inherits = FALSE)
  unknown <- list(state = rep("unknown", length(pids)), status = rep(NA_integer_, length(pids)),
                  signal = rep(NA_integer_, length(pids)))
  if (is.null(server)) return(unknown)
  give_up <- function() {
    try(fork_server_retire(server), silent = TRUE)
    unknown
  }
  sent <- tryCatch({ fork_server_send(server, "state", as.integer(pids)); TRUE }, error = function(e) FALSE)
  if (!sent) return(give_up())
  deadline <- NULL
  waiting <- function(left) {
    if (is.null(deadline)) deadline <<- Sys.time() + min(timeout, left())
    answer <- fork_server_receive(server, wait = 0.01)
    if (is.null(answer)) return(if (Sys.time() < deadline) waiting else give_up())
    tryCatch(fork_server_value(server, answer, function() fork_server_retire(server)), error = function(e) unknown)
  }
  waiting
}

# Stop the servers among `keys` (and retired ones) that have no living worker left, not
# counting the workers `stopping` (node identities), which were told to finish: with
# `background`, the server is told to exit once they are gone (and is not waited for).
fork_servers_release <- function(keys, stopping = list(), background = FALSE) {
  leaving <- sprintf("%d/%.0f", ids_pids(stopping), ids_starts(stopping))
  retired <- .package$retired_fork_servers
  current <- Filter(Negate(is.null), lapply(unique(keys), get0, envir = .package$fork_servers, inherits = FALSE))
  # Every host asked at once (a host that does not answer costs its timeout once).
  known <- fork_servers_children_alive(c(mget(ls(retired), envir = retired), current))
  children_alive <- function(server) {
    alive <- known[[node_key(server$node)]]
    alive[sprintf("%d/%.0f", server$children$pid, server$children$start_time) %in% leaving] <- FALSE
    alive
  }
  for (id in ls(retired)) {
    server <- get(id, envir = retired)
    if (!any(children_alive(server) %in% c(TRUE, NA))) {
      rm(list = id, envir = retired)
      fork_server_shutdown(server, background)
    }
  }
  for (server in current) {
    key <- server$key
    alive <- children_alive(server)
    server$children <- server$children[!(alive %in% FALSE), , drop = FALSE]
    if (nrow(server$children) > 0L) {
      assign(key, server, envir = .package$fork_servers)
    } else {
      fork_server_drop(server, background)
    }
  }
  invisible()
}

# Stop a server whose workers are gone or leaving. With `background`, it is asked to exit by
# itself once the last worker it forked has been reaped (a worker still busy after `linger`
# seconds is terminated by the server), and its own exit is left to the reaper, whose grace
# period (5 s) is longer: stopCluster() returns at once.
fork_server_shutdown <- function(server, background = FALSE, linger = 3) {
  if (background) {
    try(serialize(fork_server_request("linger", list(timeout = linger)), server$node$con,
                  xdr = node_xdr(server$node)), silent = TRUE)
  }
  try(stop_nodes(list(server$node), background = background), silent = TRUE)
}

# TRUE/FALSE/NA per worker each server forked, by the node key of the server; the remote
# servers' hosts are asked at once, within `timeout` seconds in all (a best effort: a server
# whose workers cannot be seen is kept for the next release).
fork_servers_children_alive <- function(servers, timeout = 2) {
  deadline <- Sys.time() + timeout
  count <- function(server) if (is.null(server$children)) 0L else nrow(server$children)
  tickets <- lapply(servers, function(server) {
    kids <- server$children
    if (count(server) == 0L || server$local || !is.character(server$ssh)) return(NULL)
    tryCatch(backend_ssh_submit_probe(server$ssh, kids$pid, kids$start_time, timeout = timeout), error = function(e) NULL)
  })
  alive <- Map(function(server, ticket) {
    kids <- server$children
    n <- count(server)
    if (n == 0L) return(logical(0))
    if (server$local) return(backend_probe(kids$pid, kids$start_time))
    if (!is.character(server$ssh)) {
      # A host reached through the server alone (a Slurm step, a Grid Engine task runs it).
      st <- tryCatch(fork_server_call(server, "state", as.integer(kids$pid), timeout = 5, on_failure = "retire"),
                     error = function(e) NULL)
      return(if (is.null(st)) rep(NA, n) else ifelse(st$state == "unknown", NA, st$state == "running"))
    }
    if (is.null(ticket)) return(rep(NA, n))
    left <- max(as.double(difftime(deadline, Sys.time(), units = "secs")), 0.05)
    res <- tryCatch(as.logical(backend_ssh_wait(ticket, left, server$host, "checking forked workers")), error = function(e) NULL)
    if (length(res) == n) res else rep(NA, n)
  }, servers, tickets)
  stats::setNames(alive, vapply(servers, function(server) node_key(server$node), character(1)))
}

