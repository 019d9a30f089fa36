# The fork server's side (see R/forkServer.R for the master's): the call the master sends
# it, what it does for each request, and what a forked child does to become a worker.
# Everything here runs in the server process or in its children, never in the master.

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

# The first request: which namespaces the server had loaded before the master asked, so
# that forked workers can tell whether to unload parallelly.
fork_server_do_ready <- function(args, loaded) {
  .package$namespaces_before_fork <- loaded
  # The check a forked worker asks for (R/internals.R) runs here, once, before any fork: every
  # child inherits its result instead of running it itself (time and memory in each worker).
  internal_ok("work_loop")
  identical(Sys.info()[["sysname"]], "Linux") && isTRUE(backend_can_fork()) && internal_ok("R_TempDir")
}

fork_server_do_state <- function(pids, loaded) {
  res <- backend_forked_state(pids)
  res$running <- NULL
  res
}

# Signal workers forked here that are still running (not yet reaped: their PIDs are still
# theirs), for masters that reach this host through the server alone (a Slurm step, a Grid
# Engine task). TRUE per PID signalled, FALSE when it has ended.
fork_server_do_signal <- function(args, loaded) {
  st <- backend_forked_state(as.integer(args$pids))
  running <- st$state == "running"
  for (pid in args$pids[running]) tools::pskill(pid, as.integer(args$signal))
  running
}

# Remove a killed forked worker's R temporary directory (only ever an R session's own), or
# the logs of stopped workers (only ever one of ours, remote_log_path()).
fork_server_do_unlink <- function(paths, loaded) {
  dirs <- paths[grepl("^/[[:alnum:]_./-]*/Rtmp[[:alnum:]]+$", paths)]
  unlink(dirs, recursive = TRUE, force = TRUE)
  unlink(paths[fork_server_log_path(paths)])
  TRUE
}

fork_server_log_path <- function(paths) grepl("^/tmp/parallelly-worker-[0-9a-f]{16}[.]log$", paths)

# The last lines of a forked worker's log (for a master that reaches this host through the
# server alone).
fork_server_do_tail <- function(args, loaded) {
  path <- args$path
  if (!is.character(path) || length(path) != 1L || !fork_server_log_path(path) || !file.exists(path)) return(character(0))
  utils::tail(readLines(path, warn = FALSE), as.integer(args$n))
}

# The last request: exit once every worker forked here has ended and been reaped. Those
# still running after `timeout` seconds (busy with a task) are terminated and reaped here
# first: a worker that outlived its server would be left to whoever adopts it.
fork_server_do_linger <- function(args, loaded) {
  running <- function() backend_forked_state(integer(0))$running
  wait <- function(seconds) {
    deadline <- Sys.time() + seconds
    while (running() > 0L && Sys.time() < deadline) Sys.sleep(0.01)
  }
  wait(args$timeout)
  for (signal in c(tools::SIGTERM, tools::SIGKILL)) {
    if (running() == 0L) break
    backend_forked_signal_all(signal)
    wait(1)
  }
  # The logs its workers wrote here (a master without another way to this host asked for them).
  unlink(Filter(fork_server_log_path, unlist(as.list(.package$forked_logs))))
  quit(save = "no")
}

# Fork one worker per request; the server answers with their PIDs and start times (clock
# ticks since boot, as the remote probes use them).
fork_server_do_fork <- function(requests, loaded) {
  backend_forked_state(integer(0))  # reaps the workers that exited since last time
  for (req in requests) if (isTRUE(fork_server_log_path(req$outfile))) assign(req$token, req$outfile, envir = .package$forked_logs)
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
  # Ours, made in the base environment (survives the unload below), unless the master or
  # this R rules it out (R/internals.R): then parallel's own.
  work_loop <- if (!isFALSE(req$lean_loop) && internal_ok("work_loop")) lean_work_loop() else parallel_internal("workLoop")
  hide_server_master()
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
    # The worker's own socket options ("no-delay" by default), as a launched worker sets them.
    con <- tryCatch(socketConnection(req$master, port = req$port, blocking = TRUE, open = "a+b",
                                     timeout = req$timeout, options = req$socket_options),
                    error = function(e) e)
    if (inherits(con, "connection")) break
    if (Sys.time() >= deadline) stop(con)
    Sys.sleep(0.05)
  }
  work_loop(structure(list(con = con), class = if (isTRUE(req$xdr)) "SOCKnode" else "SOCK0node"))
}

# The child runs on top of the server's frames, one of which holds the server's own
# connection to the master as `master`. future relays immediate conditions (progressr's
# updates among them) to the first `master` node it finds on the stack, from the outermost
# frame in: it must find this worker's, not the server's (closed here). The server's
# frames never resume in the child.
hide_server_master <- function() {
  for (env in sys.frames()) {
    m <- get0("master", envir = env, mode = "list", inherits = FALSE)
    if (inherits(m, c("SOCKnode", "SOCK0node"))) rm(list = "master", envir = env)
  }
}

