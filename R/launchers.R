# How workers are started and watched while they connect: on this machine by the Rust
# backend (child processes), or on a remote host through the held SSH connection (one
# control-shell command launches all of a host's workers). connect_workers() drives either
# through the same small interface:
#   launch(options_list, port, launched)  start the workers, fill in pid/start_time/log
#   check(launched, waiting)              NULL, or list(index, how) of a worker that died
#   stop(launched)                        stop the launched workers (setup failed)
#   log_tail(log)                         the last lines a worker wrote
#   start_time(pid)                       start time of a PID the handshake reported
#   connected(nodes)                      bookkeeping once all nodes are up

local_launcher <- function() {
  list(
    remote = FALSE,
    ssh_key = NULL,
    launch = function(options_list, port, launched) {
      # Everything is prepared first, so that the spawns follow each other closely: each
      # worker that starts competes for the CPU with the master that launches the next.
      specs <- lapply(options_list, worker_launch_spec, port = port)
      # Output that would go to /dev/null is kept in memory instead (the last 16 KiB), so
      # that a worker's death can be explained with what it said last.
      capture <- vapply(options_list, function(o) identical(o$outfile, "/dev/null"), logical(1))
      for (i in which(capture)) specs[[i]]$args[specs[[i]]$args == "OUT=/dev/null"] <- "OUT="
      logs <- vapply(seq_along(options_list), function(i) {
        o <- options_list[[i]]
        if (capture[i]) "|capture" else if (is.null(o$outfile)) "" else tempfile("parallelly-worker-", fileext = ".log")
      }, character(1))
      nice <- vapply(options_list, function(o) if (!is.na(o$renice) && o$renice > 0L) o$renice else 0L, integer(1))
      results <- vector("list", length(specs))
      for (i in seq_along(specs)) {
        spec <- specs[[i]]
        results[[i]] <- tryCatch(
          backend_launch(spec$program, spec$args,
                         env = c(spec$env, R_PARALLELLY_WORKER_TOKEN = launched$token[i]),
                         unset = spec$unset, output = logs[i], nice = nice[i]),
          parallellyError = function(e) e
        )
        if (inherits(results[[i]], "error")) break
      }
      for (i in seq_along(results)) {
        res <- results[[i]]
        if (is.null(res)) next
        if (nzchar(logs[i]) && logs[i] != "|capture") launched$log[i] <- logs[i]
        if (inherits(res, "error")) {
          opts <- options_list[[i]]
          stopf("Launch",
            "Failed to launch R worker #%d on local machine '%s': %s. Check argument 'rscript' (%s).",
            opts$rank, opts$worker, conditionMessage(res), opts$rscript,
            extra_class = "PSOCKConnectionError", fields = list(host = "localhost", rank = opts$rank))
        }
        launched$pid[i] <- as.integer(res$pid)
        launched$start_time[i] <- res$start_time
      }
      launched
    },
    check = function(launched, waiting) {
      if (length(waiting) == 0L) return(NULL)
      st <- backend_child_state(launched$pid[waiting])
      dead <- which(st$state != "running" & st$state != "unknown")
      if (length(dead) == 0L) return(NULL)
      k <- dead[1L]
      list(index = waiting[k], how = describe_exit(st$state[k], st$status[k], st$signal[k]))
    },
    stop = function(launched) {
      terminate_processes(launched$pid[!is.na(launched$pid)])
      remove_logs(launched$log)
    },
    log_tail = log_tail,
    start_time = backend_start_time,
    connected = function(nodes) invisible()
  )
}

remote_launcher <- function(opts) {
  host <- as.character(opts$worker)
  key <- ssh_connection(opts)$key
  timeout <- max(opts$connectTimeout, 1)
  probing <- new.env(parent = emptyenv())
  probing$ticket <- NULL
  probing$last <- Sys.time() - 10
  run <- function(script, what, wait = timeout) {
    backend_ssh_wait(backend_ssh_submit_script(key, script), wait, host, what)
  }
  list(
    remote = TRUE,
    ssh_key = key,
    launch = function(options_list, port, launched) {
      worker_port <- port
      if (isTRUE(opts$revtunnel)) {
        worker_port <- backend_ssh_wait(backend_ssh_submit_forward(key, port), timeout, host,
                                        "setting up the reverse tunnel")
      }
      commands <- vapply(seq_along(options_list), function(i) {
        remote_worker_command(options_list[[i]], worker_port, launched$token[i], keep_output = TRUE)
      }, character(1))
      logs <- sprintf("/tmp/parallelly-worker-%s.log", substr(launched$token, 1L, 16L))
      res <- backend_ssh_wait(backend_ssh_submit_launch(key, opts$launcher$program, commands, logs),
                              timeout, host, "launching workers")
      if (length(res$missing) > 0L) {
        stopf("Launch",
          "Cannot launch R workers on host '%s': the R launcher '%s' was not found there. Set argument 'rscript' to the path of Rscript on that host, e.g. rscript = \"/usr/bin/Rscript\".",
          host, opts$launcher$program, extra_class = "PSOCKConnectionError", fields = list(host = host))
      }
      if (length(res$unwritable) > 0L) {
        dir <- res$unwritable[1L]
        stopf("Launch",
          "Cannot launch R workers on host '%s': its directory '%s' is full or not writable (a one-byte test write there failed), and the workers need it for their logs and as R's temporary directory. Free space in '%s' on that host, or fix its permissions (see 'df %s' and 'ls -ld %s' there).",
          host, dir, dir, dir, dir, extra_class = "PSOCKConnectionError", fields = list(host = host, directory = dir))
      }
      if (length(res$pid) != nrow(launched)) {
        stopf("Launch", "Launching %d R workers on host '%s' started %d of them.", nrow(launched), host,
              length(res$pid), extra_class = "PSOCKConnectionError", fields = list(host = host))
      }
      launched$pid <- res$pid
      launched$start_time <- res$start_time
      launched$log <- res$log
      probing$worker_port <- worker_port
      launched
    },
    # The port the workers connect to on their host (the reverse tunnel's, with revtunnel).
    worker_port = function() probing$worker_port,
    check = function(launched, waiting) {
      # One probe at a time, at most twice a second, never blocking the accept loop.
      if (!is.null(probing$ticket)) {
        alive <- tryCatch(backend_ssh_poll(probing$ticket), parallellyError = function(e) NULL)
        if (is.null(alive)) return(NULL)
        probing$ticket <- NULL
        gone <- which(probing$pids %in% launched$pid[waiting] & alive %in% FALSE)
        if (length(gone) > 0L) {
          pid <- probing$pids[gone[1L]]
          return(list(index = match(pid, launched$pid), how = remote_exit_how(key, host, pid)))
        }
        return(NULL)
      }
      if (length(waiting) == 0L || difftime(Sys.time(), probing$last, units = "secs") < 0.5) return(NULL)
      probing$last <- Sys.time()
      probing$pids <- launched$pid[waiting]
      probing$ticket <- backend_ssh_submit_probe(key, launched$pid[waiting], launched$start_time[waiting])
      NULL
    },
    stop = function(launched) {
      if (!is.null(probing$ticket)) backend_ssh_cancel(probing$ticket)
      ok <- !is.na(launched$pid)
      if (any(ok)) remote_terminate(key, host, launched$pid[ok], launched$start_time[ok])
      logs <- launched$log[!is.na(launched$log)]
      if (length(logs) > 0L) try(run(paste("rm -f", paste(sh_quote(logs, type = "sh"), collapse = " ")), "removing logs", 5), silent = TRUE)
    },
    log_tail = function(log) {
      if (is.na(log) || !nzchar(log)) return(character(0))
      out <- tryCatch(run(sprintf("tail -n 10 %s 2>/dev/null", sh_quote(log, type = "sh")), "reading a worker log", 10),
                      error = function(e) "")
      lines <- strsplit(out, "\n", fixed = TRUE)[[1L]]
      lines[nzchar(lines)]
    },
    start_time = function(pid) NA_real_,
    connected = function(nodes) {
      for (node in nodes) ssh_register_node(key, node)
    }
  )
}

# How a remote worker that the control shell started ended, as describe_exit() says it:
# the shell, its parent, tells the exit status (once). "exited" if it cannot tell.
remote_exit_how <- function(key, host, pid) {
  status <- tryCatch(backend_ssh_wait(backend_ssh_submit_exit(key, pid), 5, host, "reading an exit status"),
                     error = function(e) NA_integer_)
  status <- suppressWarnings(as.integer(status[1L]))
  if (is.na(status) || status == 127L) return("exited")
  if (status > 128L && status <= 192L) return(describe_exit("signalled", NA_integer_, status - 128L))
  describe_exit("exited", status, NA_integer_)
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
  parts <- c(
    paste0("export ", paste(sprintf("%s=%s", names(env), q(env)), collapse = " ")),
    if (length(spec$unset) > 0L) paste("unset", paste(spec$unset, collapse = " ")),
    paste("exec", paste(q(c(spec$program, spec$args)), collapse = " "))
  )
  paste(parts, collapse = "; ")
}

# Stop remote processes: SIGTERM, then SIGKILL for those still there after `grace` seconds.
remote_terminate <- function(key, host, pids, start_times, grace = 1, timeout = 10) {
  sent <- tryCatch(
    backend_ssh_wait(backend_ssh_submit_signal(key, pids, start_times, tools::SIGTERM), timeout, host, "stopping workers"),
    error = function(e) NULL
  )
  if (is.null(sent)) return(invisible(FALSE))
  alive <- function() {
    tryCatch(backend_ssh_wait(backend_ssh_submit_probe(key, pids, start_times), timeout, host, "probing workers"),
             error = function(e) rep(NA, length(pids)))
  }
  gone <- wait_until(function() !any(alive() %in% TRUE), timeout = grace, interval = 0.05)
  if (!gone) {
    try(backend_ssh_wait(backend_ssh_submit_signal(key, pids, start_times, tools::SIGKILL), timeout, host, "killing workers"),
        silent = TRUE)
  }
  invisible(TRUE)
}

# An external SSH client (rshcmd = "ssh", or a function as in the reference package), for
# setups libssh2 lacks (ProxyCommand, Match exec, ...). Each worker gets its own client process, started
# by the Rust backend without a shell; a client that exits before its worker connects (a
# refused login, say) fails the setup at once, with what it printed.
external_launcher <- function(opts) {
  list(
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
    check = local_launcher()$check,
    stop = local_launcher()$stop,
    log_tail = log_tail,
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
    if (!is.null(opts$user) && !identical(opts$user, "*")) c("-l", opts$user),
    unlist(strsplit(paste(opts$rshopts, collapse = " "), "[[:space:]]+"))
  )
  rshopts <- rshopts[nzchar(rshopts)]
  rshcmd <- opts$rshcmd
  if (is.function(rshcmd)) {
    call <- rshcmd(rshopts = paste(rshopts, collapse = " "), worker = as.character(opts$worker))
    return(c("/bin/sh", "-c", paste(call, sh_quote(command, type = "sh"))))
  }
  rshcmd <- as.character(rshcmd)
  rshcmd <- rshcmd[!grepl("^<.*>$", rshcmd)]
  if (length(rshcmd) == 0L) rshcmd <- "ssh"
  c(rshcmd, rshopts, as.character(opts$worker), command)
}

# Run a probe or signal script on a host through the external client; logical per PID.
external_request <- function(opts, kind, pids, start_times, signal = 0L, timeout = 30) {
  script <- backend_remote_script(kind, pids, start_times, signal)
  argv <- external_ssh_command(opts, script)
  out <- suppressWarnings(system2(argv[1L], sh_quote(argv[-1L], type = "sh"), stdout = TRUE,
                                  stderr = FALSE, timeout = timeout))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L) {
    stopf("Ssh", "The SSH client (%s) failed on host '%s' with exit status %d", argv[1L], opts$worker, status,
          fields = list(host = as.character(opts$worker)))
  }
  backend_remote_parse(kind, out, pids, start_times)
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
