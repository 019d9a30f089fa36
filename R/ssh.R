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
#   parallelly.ssh.client             "auto" (default), "built-in" or "external" (R_PARALLELLY_SSH_CLIENT)

ssh_setting <- function(option, envvar, default = NULL) {
  value <- getOption(option, NULL)
  if (is.null(value)) {
    env <- Sys.getenv(envvar, "")
    if (nzchar(env)) value <- env
  }
  if (is.null(value)) default else value
}

# OpenSSH's client flags: those that take a value, and those that do not.
ssh_flags_with_value <- strsplit("BbcDEeFIiJLlmOoPpQRSWw", "")[[1L]]
ssh_flags_alone <- strsplit("46AaCfGgKkMNnqsTtVvXxYy", "")[[1L]]

# Flags as ssh_config lines the built-in client reads before the config files (so that they
# win, as on OpenSSH's command line); the Rust side decides whether it can honour them.
ssh_flag_lines <- list(`4` = "AddressFamily inet", `6` = "AddressFamily inet6",
                       A = "ForwardAgent yes", a = "ForwardAgent no", C = "Compression yes",
                       M = "ControlMaster yes", t = "RequestTTY yes", T = "RequestTTY no",
                       X = "ForwardX11 yes", Y = "ForwardX11 yes", x = "ForwardX11 no")
ssh_value_lines <- c(i = "IdentityFile", J = "ProxyJump", c = "Ciphers", m = "MACs",
                     b = "BindAddress", B = "BindInterface", S = "ControlPath",
                     I = "PKCS11Provider", D = "DynamicForward")
# Flags that change nothing for the built-in client: quiet/verbose/log, no stdin, syslog,
# no GSSAPI delegation, escape character, gateway ports for forwards, a tag.
ssh_harmless_flags <- c("q", "v", "n", "y", "k", "g", "E", "e", "P")

# Which SSH client remote workers use: "auto" (the built-in one where it can honour the
# user's whole setup, else OpenSSH's `ssh`), "built-in" (an error where it cannot) or
# "external" (always `ssh`). rshcmd = "<ssh>" chooses the built-in client.
ssh_client_choice <- function(rshcmd = NULL) {
  if (identical(rshcmd, "<ssh>")) return("built-in")
  choice <- tolower(as.character(ssh_setting("parallelly.ssh.client", "R_PARALLELLY_SSH_CLIENT", "auto"))[1L])
  if (identical(choice, "builtin")) choice <- "built-in"
  if (!choice %in% c("auto", "built-in", "external")) {
    stop_arg("parallelly.ssh.client", "must be \"auto\", \"built-in\" or \"external\": %s", choice)
  }
  choice
}

# SSH settings for one worker: list(user, port, config, known_hosts, accept_new,
# command_line, external). `command_line` holds the ssh_config lines that `rshopts` amount
# to; `external` says why only OpenSSH's client can honour `rshopts` (NULL: the built-in
# client can, as far as `rshopts` go).
resolve_ssh_settings <- function(user, rshopts) {
  settings <- list(
    user = user,
    port = NULL,
    config = ssh_setting("parallelly.ssh.config", "R_PARALLELLY_SSH_CONFIG"),
    known_hosts = ssh_setting("parallelly.ssh.knownHosts", "R_PARALLELLY_SSH_KNOWN_HOSTS"),
    accept_new = isTRUE(as.logical(ssh_setting("parallelly.ssh.acceptNewHostKeys",
                                               "R_PARALLELLY_SSH_ACCEPTNEWHOSTKEYS", FALSE))),
    command_line = character(),
    external = NULL
  )
  external <- function(why) if (is.null(settings$external)) settings$external <<- why
  opts <- rshopts_words(rshopts)
  i <- 1L
  while (i <= length(opts)) {
    token <- opts[i]
    if (!startsWith(token, "-") || nchar(token) < 2L) {
      stop_arg("rshopts", "has '%s', which is no ssh option (options start with '-', e.g. -p 2222 or -o Port=2222)", token)
    }
    chars <- strsplit(substring(token, 2L), "")[[1L]]
    k <- 1L
    while (k <= length(chars)) {
      flag <- chars[k]
      if (flag %in% ssh_flags_with_value) {
        # The value is the rest of the token (-p2222, -oBatchMode=yes) or the next one.
        value <- if (k < length(chars)) paste(chars[-seq_len(k)], collapse = "") else {
          i <- i + 1L
          if (i > length(opts)) stop_arg("rshopts", "has '-%s' without a value", flag)
          opts[i]
        }
        k <- length(chars)
        if (flag == "p") {
          settings$port <- suppressWarnings(as.integer(value))
        } else if (flag == "l") {
          settings$user <- value
        } else if (flag == "F") {
          settings$config <- value
        } else if (flag == "o") {
          kv <- regmatches(value, regexpr("[[:space:]=]+", value), invert = TRUE)[[1L]]
          key <- tolower(kv[1L])
          val <- if (length(kv) > 1L) kv[2L] else ""
          if (key == "port") settings$port <- suppressWarnings(as.integer(val))
          else if (key == "user") settings$user <- val
          else if (key == "userknownhostsfile") settings$known_hosts <- val
          else if (key == "stricthostkeychecking") settings$accept_new <- tolower(val) %in% c("accept-new", "no", "off")
          else settings$command_line <- c(settings$command_line, paste(kv[1L], val))
        } else if (flag %in% names(ssh_value_lines)) {
          settings$command_line <- c(settings$command_line, paste(ssh_value_lines[[flag]], value))
        } else if (!flag %in% ssh_harmless_flags) {
          external(sprintf("rshopts has '-%s %s', which the built-in SSH client does not implement", flag, value))
        }
      } else if (flag %in% ssh_flags_alone) {
        if (!is.null(ssh_flag_lines[[flag]])) {
          settings$command_line <- c(settings$command_line, ssh_flag_lines[[flag]])
        } else if (!flag %in% ssh_harmless_flags) {
          external(sprintf("rshopts has '-%s', which the built-in SSH client does not implement", flag))
        }
      } else {
        stop_arg("rshopts", "has '-%s', which is no option of OpenSSH's ssh", flag)
      }
      k <- k + 1L
    }
    i <- i + 1L
  }
  if (!is.null(settings$port) && (is.na(settings$port) || settings$port < 1L || settings$port > 65535L)) {
    stop_arg("rshopts", "has an invalid port: %s", paste(rshopts, collapse = " "))
  }
  settings
}

# The words of `rshopts` as a POSIX shell splits their pasted text (quotes, backslashes):
# the reference puts them on a command line that a shell runs, so that
# rshopts = c("-o", "ProxyCommand='nc %h %p'") is one option there, and here too.
rshopts_words <- function(rshopts) {
  chars <- strsplit(paste(rshopts, collapse = " "), "")[[1L]]
  n <- length(chars)
  words <- character()
  word <- character()
  has <- FALSE
  quote <- ""
  i <- 1L
  while (i <= n) {
    ch <- chars[i]
    if (quote == "'") {
      if (ch == "'") quote <- "" else word <- c(word, ch)
    } else if (quote == "\"") {
      if (ch == "\"") {
        quote <- ""
      } else if (ch == "\\" && i < n && chars[i + 1L] %in% c("\"", "\\", "$", "`")) {
        i <- i + 1L
        word <- c(word, chars[i])
      } else {
        word <- c(word, ch)
      }
    } else if (grepl("[[:space:]]", ch)) {
      if (has) words <- c(words, paste(word, collapse = ""))
      word <- character()
      has <- FALSE
    } else if (ch %in% c("'", "\"")) {
      quote <- ch
      has <- TRUE
    } else if (ch == "\\" && i < n) {
      i <- i + 1L
      word <- c(word, chars[i])
      has <- TRUE
    } else {
      word <- c(word, ch)
      has <- TRUE
    }
    i <- i + 1L
  }
  if (nzchar(quote)) stop_arg("rshopts", "has an unterminated %s quote: %s", quote, paste(rshopts, collapse = " "))
  if (has) words <- c(words, paste(word, collapse = ""))
  words
}

# Why the built-in client cannot reach `worker` as OpenSSH would with these settings (an
# option or ssh_config directive it does not implement), or NULL if it can.
ssh_needs_external <- function(worker, settings) {
  if (!is.null(settings$external)) return(settings$external)
  why <- backend_ssh_plan(worker, settings)
  if (nzchar(why)) why else NULL
}

# How a node reaches its host: the built-in client (opts$ssh), or OpenSSH's `ssh` where the
# built-in one cannot honour the user's setup (automatically, unless the built-in client was
# chosen explicitly: then that is an error saying why). Adds `client` (what summary() shows)
# and `client_reason`.
resolve_ssh_client <- function(opts, worker, rshcmd, settings) {
  choice <- ssh_client_choice(rshcmd)
  why <- if (choice == "external") "the external client was chosen (option parallelly.ssh.client)" else ssh_needs_external(worker, settings)
  if (is.null(why)) {
    opts$ssh <- settings
    opts$ssh$choice <- choice
    opts$client <- "built-in"
    mdebugf("Host '%s' uses the built-in SSH client", worker)
    return(opts)
  }
  if (choice == "built-in") {
    stopf("Ssh", "%s (the built-in SSH client was chosen with %s; without that choice host '%s' would use OpenSSH's ssh)",
          why, if (identical(rshcmd, "<ssh>")) "rshcmd = \"<ssh>\"" else "option parallelly.ssh.client", worker,
          fields = list(host = worker))
  }
  ssh_external_options(opts, worker, settings, why)
}

# `opts` switched to OpenSSH's `ssh` for `worker`, because of `why`. The built-in client's
# settings that came from options (config file, known_hosts, accepting new keys) go along
# as ssh options, so that both clients see the same setup.
ssh_external_options <- function(opts, worker, settings, why) {
  cmd <- find_rshcmd("ssh", first = TRUE, must_work = FALSE)
  if (length(cmd) == 0L) {
    stopf("Ssh", "Host '%s' needs OpenSSH's ssh client (%s), but none is installed (no 'ssh' on the PATH): install it (e.g. apt-get install openssh-client)",
          worker, why, fields = list(host = worker))
  }
  given <- paste(opts$rshopts, collapse = " ")
  # Quoted: rshopts are words as a shell splits them (see rshopts_words()).
  extra <- c(
    if (!is.null(settings$config) && !grepl("(^|[[:space:]])-F", given)) c("-F", shQuote(path.expand(settings$config))),
    if (!is.null(settings$known_hosts) && !grepl("UserKnownHostsFile", given, ignore.case = TRUE))
      c("-o", shQuote(paste0("UserKnownHostsFile=", path.expand(settings$known_hosts)))),
    if (isTRUE(settings$accept_new) && !grepl("StrictHostKeyChecking", given, ignore.case = TRUE))
      c("-o", "StrictHostKeyChecking=accept-new")
  )
  opts$rshopts <- c(extra, opts$rshopts)
  opts$rshcmd <- cmd
  opts$ssh <- NULL
  opts$client <- "ssh"
  opts$client_reason <- why
  # (Resolved options, switched at login: one client process per worker, in turn.)
  if (isTRUE(opts$setup_strategy %in% c("parallel", "fork"))) opts$setup_strategy <- "sequential"
  mdebugf("Host '%s' uses OpenSSH's ssh client (%s): %s", worker, cmd[1L], why)
  opts
}

# The held connection for a node's options, opened on first use and reopened if lost.
ssh_connection <- function(options, timeout = options$connectTimeout) {
  s <- options$ssh
  tryCatch(
    backend_ssh_connect(as.character(options$worker), user = s$user, port = s$port, config = s$config,
                        known_hosts = s$known_hosts, accept_new = s$accept_new, timeout = timeout,
                        command_line = s$command_line),
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
                      command_line = s$command_line, wait = FALSE)$ticket
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
