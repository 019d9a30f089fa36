# Setup launchers: what connect_workers() (R/launchNodePSOCK.R) drives to start the workers
# of one host and watch them while they connect. Each node kind (R/kind-*.R) makes its own;
# the fork strategy wraps the host's (R/kind-fork.R). The interface:
#   kind                                  the name of the kind its nodes get
#   remote, ssh_key                       whether the workers run elsewhere; the held connection
#   launch(options_list, port, launched)  start the workers, fill in pid/start_time/log (and
#                                         any further columns, kept in the node's "process")
#   check(launched, waiting)              NULL, or list(index, how) of a worker that died
#   stop(launched)                        stop the launched workers (setup failed)
#   log_tail(log)                         the last lines a worker wrote
#   start_time(pid)                       start time of a PID the handshake reported
#   connected(nodes)                      bookkeeping once all nodes are up

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

