# Remote hosts through the built-in SSH client (Rust, ssh2): which connection a node uses,
# the SSH settings users give through `user`, `rshopts` and options, and the bookkeeping
# that closes a host's connection when its last node is stopped.
#
# Options (and environment variables read at load):
#   parallelly.ssh.config             ssh client config file   (R_PARALLELLY_SSH_CONFIG;
#                                     default ~/.ssh/config)
#   parallelly.ssh.knownHosts         known_hosts file         (R_PARALLELLY_SSH_KNOWN_HOSTS;
#                                     default from the config, else ~/.ssh/known_hosts)
#   parallelly.ssh.acceptNewHostKeys  accept and record unknown host keys (default FALSE)
#   parallelly.ssh.timeout            seconds a probe or kill waits for a host (default 30)

ssh_setting <- function(option, envvar, default = NULL) {
  value <- getOption(option, NULL)
  if (is.null(value)) {
    env <- Sys.getenv(envvar, "")
    if (nzchar(env)) value <- env
  }
  if (is.null(value)) default else value
}

# SSH settings for one worker: list(user, port, config, known_hosts, accept_new).
resolve_ssh_settings <- function(user, rshopts) {
  settings <- list(
    user = user,
    port = NULL,
    config = ssh_setting("parallelly.ssh.config", "R_PARALLELLY_SSH_CONFIG"),
    known_hosts = ssh_setting("parallelly.ssh.knownHosts", "R_PARALLELLY_SSH_KNOWN_HOSTS"),
    accept_new = isTRUE(as.logical(ssh_setting("parallelly.ssh.acceptNewHostKeys",
                                               "R_PARALLELLY_SSH_ACCEPTNEWHOSTKEYS", FALSE)))
  )
  opts <- unlist(strsplit(paste(rshopts, collapse = " "), "[[:space:]]+"))
  opts <- opts[nzchar(opts)]
  i <- 1L
  value_of <- function(flag) {
    if (i + 1L > length(opts)) stop_arg("rshopts", "has '%s' without a value", flag)
    opts[i + 1L]
  }
  while (i <= length(opts)) {
    flag <- opts[i]
    if (flag == "-p") {
      settings$port <- as.integer(value_of(flag))
    } else if (flag == "-l") {
      settings$user <- value_of(flag)
    } else if (flag == "-F") {
      settings$config <- value_of(flag)
    } else if (flag == "-o") {
      kv <- strsplit(value_of(flag), "=", fixed = TRUE)[[1L]]
      key <- tolower(kv[1L])
      val <- paste(kv[-1L], collapse = "=")
      if (key == "port") settings$port <- as.integer(val)
      else if (key == "user") settings$user <- val
      else if (key == "userknownhostsfile") settings$known_hosts <- val
      else if (key == "stricthostkeychecking") settings$accept_new <- tolower(val) %in% c("accept-new", "no", "off")
      else stop_arg("rshopts", "has '-o %s', which the built-in SSH client does not support; use ~/.ssh/config, or rshcmd = \"ssh\" for the external client", kv[1L])
    } else {
      stop_arg("rshopts", "has '%s', which the built-in SSH client does not support (it knows -p, -l, -F and -o Port/User/UserKnownHostsFile/StrictHostKeyChecking); use ~/.ssh/config, or rshcmd = \"ssh\" for the external client", flag)
    }
    i <- i + 2L
  }
  if (!is.null(settings$port) && (is.na(settings$port) || settings$port < 1L || settings$port > 65535L)) {
    stop_arg("rshopts", "has an invalid port: %s", paste(rshopts, collapse = " "))
  }
  settings
}

# The held connection for a node's options, opened on first use and reopened if lost.
ssh_connection <- function(options, timeout = options$connectTimeout) {
  s <- options$ssh
  tryCatch(
    backend_ssh_connect(as.character(options$worker), user = s$user, port = s$port, config = s$config,
                        known_hosts = s$known_hosts, accept_new = s$accept_new, timeout = timeout),
    parallellyError = function(e) {
      e$host <- as.character(options$worker)
      stop(e)
    }
  )
}

# Start (re)opening the held connection for a node's options without waiting: a ticket for
# ssh_connect_collect(), so that several hosts connect at once.
ssh_connect_submit <- function(options, timeout) {
  s <- options$ssh
  backend_ssh_connect(as.character(options$worker), user = s$user, port = s$port, config = s$config,
                      known_hosts = s$known_hosts, accept_new = s$accept_new, timeout = timeout,
                      wait = FALSE)$ticket
}

# The connection's key, waiting at most `timeout` seconds; an error from the submit is raised.
ssh_connect_collect <- function(ticket, timeout, host) {
  if (inherits(ticket, "error")) stop(ticket)
  tryCatch(backend_ssh_wait(ticket, timeout, host, "connecting"),
           parallellyError = function(e) { e$host <- host; stop(e) })
}

# Connections in use: for each connection, the nodes (key -> pid and start time) that use
# it. The connection is closed with its last live node: when a node is released, the others
# are probed (one round trip) and dead ones -- killed and replaced by clones, say -- are
# dropped too.
ssh_register_node <- function(ssh_key, node) {
  users <- get0(ssh_key, envir = .package$ssh_users, inherits = FALSE)
  if (is.null(users)) users <- list()
  id <- node_identity(node)
  users[[node_key(node)]] <- list(pid = id$pid, start_time = id$start_time,
                                  log = if (is.character(id$log)) id$log else NA_character_)
  assign(ssh_key, users, envir = .package$ssh_users)
}

# Several nodes of one connection at once; without `probe` (a host that did not answer),
# the other users are kept as they are.
ssh_release_nodes <- function(ssh_key, node_keys, probe = TRUE) {
  users <- get0(ssh_key, envir = .package$ssh_users, inherits = FALSE)
  users <- users[setdiff(names(users), node_keys)]
  if (length(users) > 0L && probe) {
    alive <- tryCatch(
      backend_ssh_probe(ssh_key, vapply(users, `[[`, integer(1), "pid"),
                        vapply(users, function(u) as.numeric(u$start_time), numeric(1)),
                        5, ssh_key, "checking which workers still use the connection"),
      error = function(e) rep(NA, length(users)))
    # The logs of workers that are gone (killed, replaced by clones) go with them.
    ssh_remove_logs(ssh_key, users[alive %in% FALSE])
    users <- users[!(alive %in% FALSE)]
  }
  if (length(users) > 0L) {
    assign(ssh_key, users, envir = .package$ssh_users)
  } else {
    if (exists(ssh_key, envir = .package$ssh_users, inherits = FALSE)) rm(list = ssh_key, envir = .package$ssh_users)
    # A host that did not answer is not waited for long.
    if (!ssh_held(ssh_key)) backend_ssh_close(ssh_key, wait = if (probe) 2 else 0.2)
  }
}

# Remove the logs of `users` (entries of ssh_users) on the host; best effort, 5 s at most.
ssh_remove_logs <- function(ssh_key, users) {
  ssh_remove_files(ssh_key, ssh_key, unlist(lapply(users, function(u) u$log)))
}

ssh_close_if_unused <- function(ssh_key) {
  if (length(get0(ssh_key, envir = .package$ssh_users, inherits = FALSE)) == 0L && !ssh_held(ssh_key)) {
    backend_ssh_close(ssh_key)
  }
  invisible()
}

# A setup that has a host's connection in hand holds it, so that stopping other nodes of
# that host meanwhile (a fork server that turned out unable to fork, say) does not close it
# under the setup's feet. A hold only keeps the connection open; it never closes it.
ssh_holds <- function() {
  .package$ssh_holds
}

ssh_hold <- function(ssh_key) {
  holds <- ssh_holds()
  assign(ssh_key, get0(ssh_key, envir = holds, inherits = FALSE, ifnotfound = 0L) + 1L, envir = holds)
  invisible()
}

ssh_unhold <- function(ssh_key) {
  holds <- ssh_holds()
  n <- get0(ssh_key, envir = holds, inherits = FALSE, ifnotfound = 0L) - 1L
  if (n > 0L) assign(ssh_key, n, envir = holds) else if (exists(ssh_key, envir = holds, inherits = FALSE)) rm(list = ssh_key, envir = holds)
  invisible()
}

ssh_held <- function(ssh_key) {
  get0(ssh_key, envir = ssh_holds(), inherits = FALSE, ifnotfound = 0L) > 0L
}

ssh_probe_timeout <- function(timeout) {
  if (timeout > 0) timeout else as.numeric(getOption("parallelly.ssh.timeout", 30))
}
