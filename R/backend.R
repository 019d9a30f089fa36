# The one door to the Rust library. Only this file calls .Call(); every routine returns
# either its value or a list of class "parallelly_backend_error", which becomes a classed R
# condition here. Arguments are coerced to the exact types the Rust side expects, so that
# extendr never has to reject them.

backend_value <- function(res, context = NULL) {
  if (inherits(res, "parallelly_backend_error")) {
    msg <- if (is.null(context)) res$message else paste0(context, ": ", res$message)
    kind <- if (identical(res$kind, "InvalidArgument")) "Argument" else res$kind
    # A refused login where the host would take a password or prompts.
    if (identical(kind, "AuthPrompt")) stopf("Auth", "%s", msg, extra_class = "parallellyAuthPromptError")
    # Only algorithms the built-in client lacks would do (the external client may connect).
    if (identical(kind, "NoCommonAlgorithm")) stopf("Ssh", "%s", msg, extra_class = "parallellyNoCommonAlgorithmError")
    stopf(kind, "%s", msg)
  }
  res
}

as_pid <- function(pid) {
  pid <- suppressWarnings(as.integer(pid))
  pid[is.na(pid)] <- 0L
  pid
}

as_start_time <- function(start_time, n) {
  if (is.null(start_time)) return(rep(0, n))
  start_time <- as.double(start_time)
  start_time[is.na(start_time)] <- 0
  rep_len(start_time, n)
}

# Start a process without a shell. Its output goes to the log file `output`, or with
# output = "" to the master's stdout/stderr; with `capture`, into memory (the last 16 KiB,
# see backend_child_output()). Returns list(pid, start_time).
# `env` is a named character vector to set, `unset` the names of variables to remove.
backend_launch <- function(program, args, env = character(0), unset = character(0),
                           output = "", nice = 0L, capture = FALSE) {
  env_names <- as.character(names(env))
  if (length(env) == 0L) env_names <- character(0)
  output <- as.character(output)[1L]
  mode <- if (isTRUE(capture)) "capture" else if (nzchar(output)) "file" else "inherit"
  res <- .Call(wrap__rs_launch,
    as.character(program)[1L], as.character(args),
    env_names, as.character(unname(env)), as.character(unset),
    mode, output, as.integer(nice)[1L]
  )
  backend_value(res)
}

# State of processes we started: list(state, status, signal), one element each per PID.
backend_child_state <- function(pids) {
  .Call(wrap__rs_child_state, as_pid(pids))
}

# TRUE/FALSE/NA: whether (pid, start_time) is a running process on this machine.
backend_probe <- function(pids, start_times = NULL) {
  .Call(wrap__rs_probe, as_pid(pids), as_start_time(start_times, length(pids)))
}

backend_start_time <- function(pid) {
  .Call(wrap__rs_start_time, as_pid(pid)[1L])
}

# Send `signal` to (pid, start_time); FALSE if no such process runs.
backend_signal <- function(pid, signal, start_time = 0) {
  res <- .Call(wrap__rs_signal, as_pid(pid)[1L], as_start_time(start_time, 1L), as.integer(signal)[1L])
  backend_value(res, sprintf("Failed to send signal %s to process %s", signal, pid))
}

backend_running_children <- function() .Call(wrap__rs_running_children)

backend_forget_child <- function(pid) .Call(wrap__rs_forget_child, as_pid(pid)[1L])

backend_child_count <- function() .Call(wrap__rs_child_count)

# Make the socket R listens on at `port` accept connections from this machine only.
backend_rebind_loopback <- function(port) {
  backend_value(.Call(wrap__rs_rebind_loopback, as.integer(port)[1L]))
}

# TCP_NODELAY on this process's established connections accepted on `port` (or, with
# `remote`, opened to `port`): list(fd, nodelay). Lets tests read the option back.
backend_connections_nodelay <- function(port, remote = FALSE) {
  backend_value(.Call(wrap__rs_connections_nodelay, as.integer(port)[1L], isTRUE(remote)))
}

# Hand our children `pids` (sent DONE already) to a reaper thread, which waits up to `grace`
# seconds for them to exit, then terminates the rest (SIGKILL `term_grace` seconds after
# SIGTERM) and reaps and forgets them all. Returns at once.
backend_stop_in_background <- function(pids, grace = 5, term_grace = 1) {
  invisible(.Call(wrap__rs_stop_in_background, as_pid(pids), as.double(grace)[1L], as.double(term_grace)[1L]))
}

# The same for processes that are not our children (workers forked by our fork server, which
# reaps them), by PID and start time; one whose start time differs is left alone.
backend_stop_strangers_in_background <- function(pids, start_times, grace = 5, term_grace = 1) {
  invisible(.Call(wrap__rs_stop_strangers_in_background, as_pid(pids), as.double(start_times),
                  as.double(grace)[1L], as.double(term_grace)[1L]))
}

# Reaper threads still at work; and ending them (their children terminated), waiting up to
# `timeout` seconds: TRUE if none is left.
backend_reapers_active <- function() .Call(wrap__rs_reapers_active)
backend_reapers_shutdown <- function(timeout = 5) .Call(wrap__rs_reapers_shutdown, as.double(timeout)[1L])

# In a fork server (R/forkServer.R): fork a clean worker (its PID here, 0 in the child), and
# how the forked workers ended (reaping them): list(state, status, signal, running).
backend_fork_worker <- function() backend_value(.Call(wrap__rs_fork_worker))

backend_can_fork <- function() .Call(wrap__rs_can_fork)

# The path R's R_TempDir points at (found with dlsym()), or NULL (R/internals.R).
backend_r_temp_dir <- function() .Call(wrap__rs_r_temp_dir)

backend_exit_now <- function(status) .Call(wrap__rs_exit_now, as.integer(status)[1L])

backend_forked_state <- function(pids) .Call(wrap__rs_forked_state, as_pid(pids))
# In a fork server: signal every worker it forked that has not been reaped.
backend_forked_signal_all <- function(signal) .Call(wrap__rs_forked_signal_all, as.integer(signal)[1L])

# TRUE if a TCP port can be bound and listened on now.
backend_port_is_free <- function(port) {
  port <- suppressWarnings(as.integer(port))
  if (length(port) != 1L || is.na(port)) return(NA)
  .Call(wrap__rs_port_is_free, port)
}

# --- The built-in SSH client ------------------------------------------------------------

# Open (or reuse) the held connection to a host: list(key, host, hostname, user, port).
# The connect itself (TCP, handshake, authentication) is bounded by `timeout`.
backend_ssh_connect <- function(host, user = NULL, port = NULL, config = NULL, known_hosts = NULL,
                                accept_new = FALSE, timeout = 120, wait = TRUE, command_line = character()) {
  res <- .Call(wrap__rs_ssh_connect,
    as.character(host)[1L],
    if (is.null(user)) "" else as.character(user)[1L],
    if (is.null(port)) 0L else as.integer(port)[1L],
    if (is.null(config)) "" else path.expand(as.character(config)[1L]),
    if (is.null(known_hosts)) "" else path.expand(as.character(known_hosts)[1L]),
    isTRUE(accept_new), as.double(timeout)[1L], as.character(command_line)
  )
  res <- backend_value(res)
  # With wait = FALSE the caller collects res$ticket itself (several hosts at once).
  if (!wait) return(res)
  # Connecting runs on a thread of the backend; wait in interruptible slices.
  res$key <- backend_ssh_wait(res$ticket, as.double(timeout) + 5, as.character(host)[1L], "connecting")
  res$ticket <- NULL
  res
}

# The next step in reading a worker's answer to the handshake from `bytes` read so far
# (src/rust/src/handshake.rs): a count of bytes to read next, list(pid, token), or why the
# connection is no worker's.
backend_handshake_step <- function(bytes) .Call(wrap__rs_handshake_step, bytes)

# Why the built-in client cannot reach `host` as OpenSSH would with `settings` (see
# resolve_ssh_settings()), or "" if it can; reads the ssh config, no network.
backend_ssh_plan <- function(host, settings) {
  backend_value(.Call(wrap__rs_ssh_plan, as.character(host)[1L],
    if (is.null(settings$user)) "" else as.character(settings$user)[1L],
    if (is.null(settings$port)) 0L else as.integer(settings$port)[1L],
    if (is.null(settings$config)) "" else path.expand(as.character(settings$config)[1L]),
    as.character(settings$command_line)))
}

# Wait for the answer to an SSH request, in short slices so that R stays interruptible.
# On timeout the request is abandoned and a parallellyTimeoutError names the host.
# A request is never run after its caller stopped waiting for it (see ssh_budget()): a
# request submitted in the call `backend_ssh_wait(backend_ssh_submit_X(...), timeout, ...)`
# gets `timeout` as its budget, since the ticket is forced here.
backend_ssh_wait <- function(ticket, timeout, host, what) {
  old <- .package$ssh_budget
  .package$ssh_budget <- as.double(timeout)
  on.exit(.package$ssh_budget <- old, add = TRUE)
  ticket <- backend_value(ticket)  # forces the submit, if it is one
  deadline <- Sys.time() + timeout
  done <- FALSE
  on.exit(if (!done) .Call(wrap__rs_ssh_cancel, ticket), add = TRUE)
  repeat {
    res <- .Call(wrap__rs_ssh_poll, ticket, 25)
    if (!is.null(res)) {
      done <- TRUE
      return(backend_value(res))
    }
    if (Sys.time() >= deadline) {
      stopf("Timeout", "Host '%s' did not answer within %g seconds (%s)", host, timeout, what,
            fields = list(host = host))
    }
    Sys.sleep(0)  # lets R notice an interrupt
  }
}

# Seconds a request may take before it is withdrawn, on the host too (0: no limit): the
# timeout of the backend_ssh_wait() that is forcing the submit, if any.
ssh_budget <- function() {
  b <- .package$ssh_budget
  if (is.numeric(b) && length(b) == 1L && !is.na(b) && b > 0) b else 0
}

backend_ssh_submit_probe <- function(key, pids, start_times, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_probe, key, as_pid(pids), as_start_time(start_times, length(pids)),
        as.double(timeout)[1L])
}

backend_ssh_submit_signal <- function(key, pids, start_times, signal, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_signal, key, as_pid(pids), as_start_time(start_times, length(pids)),
        as.integer(signal)[1L], as.double(timeout)[1L])
}

backend_ssh_submit_launch <- function(key, program, commands, logs, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_launch, key, as.character(program)[1L], as.character(commands),
        as.character(logs), as.double(timeout)[1L])
}

backend_ssh_submit_script <- function(key, script, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_script, key, paste(script, collapse = "\n"), as.double(timeout)[1L])
}

backend_ssh_submit_forward <- function(key, target_port) {
  .Call(wrap__rs_ssh_submit_forward, key, as.integer(target_port)[1L])
}

# One function per kind of request, each answering in one shape: submit, then wait at most
# `timeout` seconds (a parallellyTimeoutError names `host` and `what`). For several hosts at
# once, submit to each with backend_ssh_submit_*() and collect with backend_ssh_wait().
backend_ssh_run <- function(key, script, timeout, host, what = "running a script") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_script(key, script), timeout, host, what),
             function(x) is.character(x) && length(x) == 1L, host, what)
}

backend_ssh_probe <- function(key, pids, start_times, timeout, host, what = "probing workers") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_probe(key, pids, start_times), timeout, host, what),
             function(x) is.logical(x) && length(x) == length(pids), host, what)
}

backend_ssh_signal <- function(key, pids, start_times, signal, timeout, host, what = "signalling workers") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_signal(key, pids, start_times, signal), timeout, host, what),
             function(x) is.logical(x) && length(x) == length(pids), host, what)
}

backend_ssh_exit_status <- function(key, pids, timeout, host, what = "reading exit statuses") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_exit(key, pids), timeout, host, what),
             function(x) is.numeric(x) && length(x) == length(pids), host, what)
}

backend_ssh_usage <- function(key, pids, timeout, host, what = "reading resource use") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_usage(key, pids), timeout, host, what),
             function(x) is.list(x) && identical(names(x), c("rss", "cpu", "uptime")), host, what)
}

backend_ssh_launch <- function(key, program, commands, logs, timeout, host, what = "launching workers") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_launch(key, program, commands, logs), timeout, host, what),
             function(x) is.list(x) && all(c("pid", "start_time", "log", "missing", "unwritable") %in% names(x)),
             host, what)
}

backend_ssh_forward <- function(key, target_port, timeout, host, what = "setting up the reverse tunnel") {
  ssh_shaped(backend_ssh_wait(backend_ssh_submit_forward(key, target_port), timeout, host, what),
             function(x) is.numeric(x) && length(x) == 1L, host, what)
}

# `value` if `ok(value)`, else an error: an answer of another kind is a bug of ours.
ssh_shaped <- function(value, ok, host, what) {
  if (!isTRUE(ok(value))) {
    stopf("Ssh", "Host '%s' answered %s with a %s of length %d, which is not the expected answer",
          host, what, class(value)[1L], length(value), fields = list(host = host))
  }
  value
}

# A submitted request's answer right now, or NULL if still pending.
backend_ssh_poll <- function(ticket) backend_value(.Call(wrap__rs_ssh_poll, ticket, 0))

backend_ssh_cancel <- function(ticket) invisible(.Call(wrap__rs_ssh_cancel, ticket))

# `wait`: seconds to wait for the connection's thread (at most 2).
backend_ssh_close <- function(key, wait = 2) .Call(wrap__rs_ssh_close, as.character(key)[1L], as.double(wait)[1L])

backend_ssh_close_all <- function() invisible(.Call(wrap__rs_ssh_close_all))

backend_ssh_connections <- function() {
  res <- .Call(wrap__rs_ssh_connections)
  data.frame(key = res$key, alive = res$alive, remote_port = as.integer(res$remote_port),
             tunnels = res$tunnels, error = as.character(res$error), stringsAsFactors = FALSE)
}

# How many times libssh2 called our ChaCha20-Poly1305 (src/rust/src/ssh/crypto.rs).
backend_ssh_crypto_calls <- function() .Call(wrap__rs_ssh_crypto_calls)

# Probe/signal scripts and their parsers, for running through an external SSH client.
backend_remote_script <- function(kind, pids, start_times = NULL, signal = 0L) {
  backend_value(.Call(wrap__rs_remote_script, kind, as_pid(pids), as_start_time(start_times, length(pids)),
                      as.integer(signal)[1L]))
}

backend_remote_parse <- function(kind, output, pids, start_times = NULL) {
  backend_value(.Call(wrap__rs_remote_parse, kind, paste(output, collapse = "\n"), as_pid(pids),
                      as_start_time(start_times, length(pids))))
}

# The last output a local worker wrote (captured in memory by the backend), or NA.
backend_child_output <- function(pid) .Call(wrap__rs_child_output, as_pid(pid)[1L])

# Resource use per PID: list(rss = bytes, cpu = seconds, uptime = seconds); NA if not running.
backend_usage <- function(pids) .Call(wrap__rs_usage, as_pid(pids))

backend_ssh_submit_exit <- function(key, pids, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_exit, key, as_pid(pids), as.double(timeout)[1L])
}

backend_ssh_submit_usage <- function(key, pids, timeout = ssh_budget()) {
  .Call(wrap__rs_ssh_submit_usage, key, as_pid(pids), as.double(timeout)[1L])
}

# Whether more threads are runnable on this machine right now than it has cores (some wait
# for one); NA where that cannot be read. Cheap: a few microseconds (R/spinWait.R).
backend_cores_taken <- function() .Call(wrap__rs_cores_taken)

# Task numbers on the wire (R/nodeTraffic.R, src/rust/src/task_wire.rs). These run for every
# task and result, so they pass their arguments as they are: the callers hold exactly what
# the Rust side takes (an external pointer made here, an integer count, TRUE/FALSE/NULL),
# and neither returns an error. The per-message paths of sendData() and recvData() call the
# two routines directly (the one other .Call outside this file): a closure call there costs
# as much as the routine.
backend_task_numbers <- function() .Call(wrap__rs_task_numbers)
backend_task_numbers_value <- function(numbers) .Call(wrap__rs_task_numbers_value, numbers)
backend_task_wire_functions <- function(eval, lapply) invisible(.Call(wrap__rs_task_wire_functions, eval, lapply))
backend_number_task <- function(numbers, data, aborts, wire_ok, final_answer) {
  .Call(wrap__rs_number_task, numbers, data, aborts, wire_ok, final_answer)
}
backend_accept_message <- function(numbers, msg) .Call(wrap__rs_accept_message, numbers, msg)
backend_usable_cores <- function() .Call(wrap__rs_usable_cores)
