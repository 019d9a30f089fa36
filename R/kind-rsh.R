# Kind "rsh": a worker on another machine started through an external client (rshcmd =
# "ssh", or a function returning a command line as in the reference package), for setups
# libssh2 lacks (ProxyCommand, Match exec, ...). Each worker has its own client process, our
# child; probes and signals run through a new client call each.

node_kind_rsh <- list(
  name = "rsh",
  priority = 90,
  claims = function(opts) TRUE,
  launcher = function(opts) external_launcher(opts),
  # Remote nodes of other code are reached as this kind reaches its own.
  adopts = function(local) !local,
  answers_locally = function(id) FALSE,
  group = function(id) paste0("rsh:", id$host),
  probe = function(ids, timeout) rsh_request(ids, "probe", 0L, timeout),
  signal = function(ids, signal, timeout) rsh_request(ids, "signal", signal, timeout),
  # A client ends with its worker: the clients are what is stopped and reaped here.
  stop = function(ids, background, grace = 5) stop_children(ids, background, grace),
  exit_cause = function(ids) rep(NA_character_, length(ids)),
  usage = function(ids, timeout) unknown_usage(ids),
  # What the client printed (its own errors, and the worker's output it relays).
  last_output = function(id, n) child_output(id, n),
  after_kill = function(id) invisible()
)

rsh_request <- function(ids, kind, signal, timeout) {
  options <- node_options(ids[[1L]]$node)
  external_request(options, kind, ids_pids(ids), ids_starts(ids), signal = signal,
                   timeout = ssh_probe_timeout(timeout))
}

# An external SSH client (rshcmd = "ssh", or a function as in the reference package), for
# setups libssh2 lacks (ProxyCommand, Match exec, ...). Each worker gets its own client process, started
# by the Rust backend without a shell; a client that exits before its worker connects (a
# refused login, say) fails the setup at once, with what it printed.
external_launcher <- function(opts) {
  clients <- local_launcher()  # the clients are our children, watched like local workers
  list(
    kind = "rsh",
    remote = TRUE,
    ssh_key = NULL,
    launch = function(options_list, port, launched) {
      for (i in seq_along(options_list)) {
        o <- options_list[[i]]
        worker_port <- if (isTRUE(o$revtunnel)) port + o$rank - 1L else port
        command <- remote_worker_command(o, worker_port, launched$token[i])
        argv <- external_ssh_command(o, command, tunnel = if (isTRUE(o$revtunnel)) c(worker_port, port))
        log <- tempfile("parallelly-ssh-", fileext = ".log")
        launched$log[i] <- log
        res <- tryCatch(backend_launch(argv[1L], argv[-1L], output = log), parallellyError = function(e) e)
        if (inherits(res, "error")) {
          stopf("Launch", "Failed to start the SSH client for worker #%d on host '%s': %s. Check argument 'rshcmd'.",
                o$rank, o$worker, conditionMessage(res), extra_class = "PSOCKConnectionError",
                fields = list(host = as.character(o$worker)))
        }
        launched$pid[i] <- as.integer(res$pid)
      }
      launched
    },
    check = clients$check,
    start_time = function(pid) NA_real_,
    connected = function(nodes) invisible()
  )
}

# The argument vector that runs `command` on the worker's host through the external client
# (a function-valued rshcmd returns a shell command line, which is then run by sh).
external_ssh_command <- function(opts, command, tunnel = NULL) {
  command <- login_shell_command(command)
  rshopts <- c(
    if (is.character(opts$rshlogfile)) c("-E", opts$rshlogfile),
    if (length(tunnel) == 2L) c("-R", sprintf("%d:127.0.0.1:%d", tunnel[1L], tunnel[2L])),
    if (!is.null(opts$user) && !identical(opts$user, "*")) c("-l", opts$user)
  )
  rshcmd <- opts$rshcmd
  if (is.function(rshcmd)) {
    # As in the reference: the function gets rshopts as text, for a command line.
    rshopts <- paste(c(rshopts, opts$rshopts), collapse = " ")
    call <- rshcmd(rshopts = rshopts, worker = as.character(opts$worker))
    return(c("/bin/sh", "-c", paste(call, sh_quote(command, type = "sh"))))
  }
  # No shell runs the client: rshopts are split into words as a shell would.
  rshopts <- c(rshopts, rshopts_words(opts$rshopts))
  rshcmd <- as.character(rshcmd)
  rshcmd <- rshcmd[!grepl("^<.*>$", rshcmd)]
  if (length(rshcmd) == 0L) rshcmd <- "ssh"
  c(rshcmd, rshopts, as.character(opts$worker), command)
}

# Run a probe or signal script on a host through the external client, without waiting:
# the client is started (our child, its output in a file) and a stage (R/nodeKind.R) is
# returned that answers a logical per PID once the client has ended, so that all hosts are
# asked at once; a client still running after `timeout` seconds is killed, and the host
# reported as not answering.
external_request <- function(opts, kind, pids, start_times, signal = 0L, timeout = 30) {
  host <- as.character(opts$worker)
  script <- backend_remote_script(kind, pids, start_times, signal)
  argv <- external_ssh_command(opts, script)
  out <- tempfile("parallelly-ssh-", fileext = ".out")
  client <- tryCatch(backend_launch(argv[1L], argv[-1L], output = out), parallellyError = function(e) {
    stopf("Ssh", "Cannot start the SSH client (%s) for host '%s': %s. Check argument 'rshcmd'.", argv[1L], host,
          conditionMessage(e), fields = list(host = host))
  })
  pid <- as.integer(client$pid)
  deadline <- Sys.time() + timeout
  done <- function() {
    st <- backend_child_state(pid)
    backend_forget_child(pid)
    output <- if (file.exists(out)) readLines(out, warn = FALSE) else character(0)
    unlink(out)
    list(state = st, output = output)
  }
  stage <- function(left) {
    if (backend_child_state(pid)$state == "running") {
      if (Sys.time() < deadline) {
        Sys.sleep(0.02)
        return(stage)
      }
      try(backend_signal(pid, tools::SIGKILL), silent = TRUE)
      wait_until(function() backend_child_state(pid)$state != "running", timeout = 1, interval = 0.01)
      done()
      stopf("Timeout", "Host '%s' did not answer within %g seconds (the SSH client, %s)", host, timeout, argv[1L],
            fields = list(host = host))
    }
    res <- done()
    if (!identical(res$state$state, "exited") || !identical(as.integer(res$state$status), 0L)) {
      how <- describe_exit(res$state$state, res$state$status, res$state$signal)
      stopf("Ssh", "The SSH client (%s) failed on host '%s': it %s", argv[1L], host, how,
            fields = list(host = host))
    }
    backend_remote_parse(kind, res$output, pids, start_times)
  }
  stage
}

# A command line that runs the sh script `script` whatever the remote user's login shell
# is (sshd hands it to that shell): bash, dash, csh/tcsh and fish all read a word, and a
# single-quoted string without quotes, backslashes, newlines or '!' inside, alike. The
# script itself travels base64-encoded, so that nothing in it meets the login shell.
login_shell_command <- function(script) {
  sprintf("exec /bin/sh -c 'eval \"$(printf %%s %s | base64 -d)\"'", base64_encode(script))
}

base64_encode <- function(text) {
  bytes <- as.integer(charToRaw(enc2utf8(text)))
  if (length(bytes) == 0L) return("")
  pad <- (3L - length(bytes) %% 3L) %% 3L
  m <- matrix(c(bytes, integer(pad)), nrow = 3L)
  n <- m[1L, ] * 65536L + m[2L, ] * 256L + m[3L, ]
  idx <- rbind(n %/% 262144L, (n %/% 4096L) %% 64L, (n %/% 64L) %% 64L, n %% 64L)
  alphabet <- c(LETTERS, letters, 0:9, "+", "/")
  out <- alphabet[as.vector(idx) + 1L]
  if (pad > 0L) out[length(out) - seq_len(pad) + 1L] <- "="
  paste(out, collapse = "")
}
