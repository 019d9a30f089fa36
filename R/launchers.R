# Setup launchers: what connect_workers() (R/launchNodePSOCK.R) drives to start the workers
# of one host and watch them while they connect. Each node kind (R/kind-*.R) makes its own
# (its `launcher(opts)`); the fork strategy wraps the host's (R/kind-fork.R). A launcher
# holds only what setup alone needs; what a worker wrote and how it is stopped are the
# kind's own `last_output()` and `stop()`, asked at setup too about the launched workers
# (launch_identity()), so that each kind says each thing once. The interface:
#   kind                                  the name of the kind its nodes get
#   remote, ssh_key                       whether the workers run elsewhere; the held connection
#   launch(options_list, port, launched)  start the workers, fill in pid/start_time/log (and
#                                         any further columns, kept in the node's "process")
#   submit(options_list, port, launched)  optional: launch() as a poll (R/setupHosts.R)
#   check(launched, waiting)              NULL, or list(index, how) of a worker that died
#   cancel()                              optional: withdraw pending requests (setup failed)
#   start_time(pid)                       start time of a PID the handshake reported
#   connected(nodes)                      bookkeeping once all nodes are up

# A launched worker (one row of `launched`) as its kind's operations see a node (the fields
# of node_identity()), before it has connected: its PID is the process the launcher
# started (the worker, or the client process that runs it), and there is no node yet.
launch_identity <- function(launcher, opts, launched) {
  row <- as.list(launched)
  list(pid = as.integer(row$pid), start_time = as.numeric(row$start_time),
       local = !isTRUE(launcher$remote), kind = launcher$kind, host = as.character(opts$worker),
       key = NA_character_, launcher_pid = as.integer(row$pid), log = row$log, ssh = launcher$ssh_key,
       fork_server = launcher$fork_server, tempdir = NA_character_,
       process = row[setdiff(names(row), "token")], node = NULL)
}

# The last lines a launched worker wrote, as its kind reads them.
launch_output <- function(launcher, opts, launched, n = 10L) {
  id <- launch_identity(launcher, opts, launched)
  tryCatch(node_kind(launcher$kind)$last_output(id, n), error = function(e) character(0))
}

# Stop the launched workers of a setup that failed (`options_list`, rows of `launched`):
# the kind's stop() without a grace period, as they were never told to finish.
stop_launched <- function(launcher, options_list, launched) {
  if (is.function(launcher$cancel)) try(launcher$cancel(), silent = TRUE)
  rows <- which(!is.na(launched$pid) | !is.na(launched$log))
  if (length(rows) == 0L) return(invisible())
  ids <- lapply(rows, function(i) launch_identity(launcher, options_list[[min(i, length(options_list))]], launched[i, , drop = FALSE]))
  run_stages(list(node_kind(launcher$kind)$stop(ids, background = FALSE, grace = 0)))
  invisible()
}

# The body of the remote subshell that becomes the worker: settings are exported (a
# builtin: the token never shows in any process's arguments), then the launcher is exec'd.
# With `keep_output`, output that would go to /dev/null goes to the worker's log instead
# (the launch script's redirection), so that its death can be explained with its last words.
remote_worker_command <- function(opts, port, token, keep_output = FALSE) {
  spec <- worker_launch_spec(opts, port)
  if (keep_output) spec$args[spec$args == "OUT=/dev/null"] <- "OUT="
  q <- function(x) sh_quote(x, type = "sh")
  env <- c(spec$env, R_PARALLELLY_WORKER_TOKEN = token)
  # Names a shell cannot export (e.g. with a '-') are set by env(1) for the exec'd program.
  odd <- !is_shell_name(names(env))
  parts <- c(
    paste0("export ", paste(sprintf("%s=%s", names(env)[!odd], q(env[!odd])), collapse = " ")),
    if (length(spec$unset) > 0L) paste("unset", paste(spec$unset, collapse = " ")),
    paste("exec", paste(c(if (any(odd)) c("env", q(paste0(names(env)[odd], "=", env[odd]))),
                          q(c(spec$program, spec$args))), collapse = " "))
  )
  paste(parts, collapse = "; ")
}

