# Why a worker died, and what it is using while alive: the columns alive, exit, rss, cpu,
# uptime and restarts of summary(), and the cause of death that print() adds for a dead
# node. Local workers are answered by the Rust backend (child handles, sysinfo); remote
# ones through the held SSH connection, one command per host: /proc for resource use, and
# the control shell, the parent of the workers it started, for how they ended.

# How a local worker ended, from its child handle: "exit status 1", "killed by signal 9
# (SIGKILL) ...", or NA when it runs or is not a child of this session. A forked worker's
# parent is its fork server, which is asked instead (local and remote alike).
node_exit_causes <- function(nodes) {
  causes <- rep(NA_character_, length(nodes))
  ids <- lapply(nodes, node_identity)
  servers <- vapply(nodes, function(node) {
    key <- attr(node, "process", exact = TRUE)$fork_server
    if (is.character(key)) key else NA_character_
  }, character(1))
  forked <- which(!is.na(servers) & !vapply(ids, function(id) is.na(id$pid), logical(1)))
  for (idx in split(forked, servers[forked])) {
    st <- fork_server_exit_states(servers[idx[1L]], vapply(ids[idx], `[[`, integer(1), "pid"))
    for (k in seq_along(idx)) causes[idx[k]] <- exit_cause(st$state[k], st$status[k], st$signal[k])
  }
  local <- which(is.na(servers) & vapply(ids, function(id) isTRUE(id$local) && is.numeric(id$launcher_pid) && !is.na(id$launcher_pid), logical(1)))
  if (length(local) == 0L) return(causes)
  st <- backend_child_state(vapply(ids[local], `[[`, integer(1), "launcher_pid"))
  for (k in seq_along(local)) {
    causes[local[k]] <- exit_cause(st$state[k], st$status[k], st$signal[k])
  }
  causes
}

# A shell's exit status: 128 + N means killed by signal N.
shell_exit_cause <- function(status) {
  if (is.na(status)) return(NA_character_)
  if (status > 128L && status <= 192L) exit_cause("signalled", NA_integer_, status - 128L) else exit_cause("exited", status, NA_integer_)
}

exit_cause <- function(state, status, signal) {
  switch(state,
    exited = sprintf("exit status %d", status),
    signalled = if (signal == 9L) {
      "killed by signal 9 (SIGKILL); unless it was killed on purpose, this is what the out-of-memory killer sends: check the kernel log (dmesg)"
    } else {
      sprintf("killed by signal %d (%s)", signal, signal_name(signal))
    },
    gone = "exited",
    NA_character_
  )
}

# The last lines a dead worker wrote (local workers whose output was captured, or whose
# outfile is a file of ours).
node_last_output <- function(node, n = 5L) {
  id <- node_identity(node)
  if (is.character(id$ssh) && !isTRUE(id$local)) return(remote_last_output(node, id$log, id$host, n))
  if (!isTRUE(id$local) || is.null(id$launcher_pid)) return(character(0))
  worker_output(local_launcher(), if (is.null(id$log)) NA_character_ else id$log, id$launcher_pid, n = n)
}

# The end of a remote worker's log, read over its host's held connection (at most 5 s).
remote_last_output <- function(node, log, host, n) {
  if (!is.character(log) || is.na(log) || !nzchar(log)) return(character(0))
  key <- tryCatch(ssh_key_of(node), error = function(e) NULL)
  if (is.null(key)) return(character(0))
  out <- tryCatch(backend_ssh_wait(backend_ssh_submit_script(key, sprintf("tail -n %d %s 2>/dev/null", n, sh_quote(log, type = "sh"))),
                                   5, host, "reading a worker log"), error = function(e) "")
  lines <- strsplit(out, "\n", fixed = TRUE)[[1L]]
  lines[nzchar(lines)]
}

# Extra summary columns for the nodes of a cluster.
node_health <- function(nodes, timeout = 5) {
  n <- length(nodes)
  res <- data.frame(alive = rep(NA, n), exit = NA_character_, rss = NA_real_, cpu = NA_real_,
                    uptime = NA_real_, restarts = NA_integer_, stringsAsFactors = FALSE)
  rich <- which(vapply(nodes, function(node) inherits(node, "RichSOCKnode"), logical(1)))
  if (length(rich) == 0L) return(res)
  res$alive[rich] <- suppressWarnings(probe_nodes(nodes[rich], timeout = timeout))
  res$restarts[rich] <- vapply(nodes[rich], function(node) {
    r <- node_options(node)$restarts
    if (is.numeric(r)) as.integer(r) else 0L
  }, integer(1))
  dead <- rich[res$alive[rich] %in% FALSE]
  if (length(dead) > 0L) res$exit[dead] <- node_exit_causes(nodes[dead])
  ids <- lapply(nodes, function(node) if (inherits(node, "RichSOCKnode")) node_identity(node))
  local <- rich[vapply(ids[rich], function(id) isTRUE(id$local) && !is.na(id$pid), logical(1)) & res$alive[rich] %in% TRUE]
  if (length(local) > 0L) {
    usage <- backend_usage(vapply(ids[local], `[[`, integer(1), "pid"))
    res$rss[local] <- usage$rss
    res$cpu[local] <- usage$cpu
    res$uptime[local] <- usage$uptime
  }
  # Remote nodes over the built-in client: one usage and one exit query per host.
  remote <- rich[vapply(ids[rich], function(id) is.character(id$ssh) && !is.na(id$pid), logical(1))]
  for (idx in split(remote, vapply(ids[remote], `[[`, character(1), "ssh"))) {
    host <- ids[[idx[1L]]]$host
    key <- tryCatch(ssh_key_of(nodes[[idx[1L]]]), error = function(e) NULL)
    if (is.null(key)) next
    up <- idx[res$alive[idx] %in% TRUE]
    if (length(up) > 0L) {
      usage <- tryCatch(backend_ssh_wait(backend_ssh_submit_usage(key, vapply(ids[up], `[[`, integer(1), "pid")),
                                         timeout, host, "reading resource use"), error = function(e) NULL)
      if (!is.null(usage)) {
        res$rss[up] <- usage$rss
        res$cpu[up] <- usage$cpu
        res$uptime[up] <- usage$uptime
      }
    }
    down <- idx[res$alive[idx] %in% FALSE]
    if (length(down) > 0L) {
      status <- tryCatch(backend_ssh_wait(backend_ssh_submit_exit(key, vapply(ids[down], `[[`, integer(1), "pid")),
                                          timeout, host, "reading exit statuses"), error = function(e) NULL)
      # 127: the shell did not start this worker (a new connection), or has told already.
      if (!is.null(status)) {
        causes <- vapply(status, function(s) if (is.na(s) || s == 127L) NA_character_ else shell_exit_cause(s), character(1))
        for (k in seq_along(down)) {
          key <- node_key(nodes[[down[k]]])
          if (!is.na(causes[k])) assign(key, causes[k], envir = .package$exit_causes)
          else causes[k] <- get0(key, envir = .package$exit_causes, inherits = FALSE, ifnotfound = NA_character_)
        }
        res$exit[down] <- ifelse(is.na(causes), res$exit[down], causes)
      }
    }
  }
  dead_unknown <- rich[res$alive[rich] %in% FALSE & is.na(res$exit[rich])]
  res$exit[dead_unknown] <- "exited (cause unknown)"
  res
}

#' Relaunch the dead workers of a cluster
#'
#' Every node whose worker is no longer alive is relaunched in place, with the same host
#' and options (see [cloneNode()]); the local nodes, and those of each remote host, are
#' relaunched together. Nodes whose state cannot be determined (`NA`) are left as they are.
#'
#' @param cl A cluster.
#' @param timeout Seconds to wait for a remote host to answer whether its workers are
#' alive.
#' @return The cluster, with its dead nodes replaced (attribute `repaired`: their indices).
#' @examples
#' cl <- makeClusterPSOCK(2)
#' killNode(cl[[2]])
#' Sys.sleep(0.5)
#' cl <- repairCluster(cl)
#' isNodeAlive(cl)
#' parallel::stopCluster(cl)
#' @export
repairCluster <- function(cl, timeout = 0) {
  if (!inherits(cl, "cluster")) {
    stop_arg("cl", "must be a cluster, not an object of class '%s'", class(cl)[1L])
  }
  alive <- isNodeAlive(cl, timeout = timeout)
  dead <- which(alive %in% FALSE)
  if (length(dead) > 0L) cl[dead] <- cloneNode(cl[dead])
  attr(cl, "repaired") <- dead
  cl
}
