# Why a worker died, and what it is using while alive: the columns alive, exit, rss, cpu,
# uptime and restarts of summary(), and the cause of death that print() adds for a dead
# node. Each node's kind (R/kind-*.R) answers for its workers.

# How each node's worker ended, as its kind can tell: "exit status 1", "killed by signal 9
# (SIGKILL) ...", or NA when it runs or nobody can tell (asked of dead workers only). All
# groups (hosts) are asked at once, within `timeout` seconds.
node_exit_causes <- function(nodes, timeout = 5) {
  ids <- lapply(nodes, node_identity)
  causes <- rep(NA_character_, length(nodes))
  known <- which(!is.na(ids_pids(ids)))
  for (a in ask_groups(ids[known], "exit_cause", timeout = timeout)) {
    if (is.character(a$value)) causes[known[a$idx]] <- a$value
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

# The last lines a dead worker wrote, as far as its kind keeps them.
node_last_output <- function(node, n = 5L) {
  id <- node_identity(node)
  tryCatch(node_kind(id$kind)$last_output(id, n), error = function(e) character(0))
}

# Extra summary columns for the nodes of a cluster: whether each worker is alive, how the
# dead ones ended, and what the live ones use (one request per group and question).
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
  if (length(dead) > 0L) res$exit[dead] <- node_exit_causes(nodes[dead], timeout = timeout)
  up <- rich[res$alive[rich] %in% TRUE]
  ids <- lapply(nodes[up], node_identity)
  # All groups (hosts) at once, within one timeout.
  for (a in ask_groups(ids, "usage", list(timeout = timeout), timeout = timeout)) {
    usage <- a$value
    if (inherits(usage, "error") || !is.list(usage)) next
    res$rss[up[a$idx]] <- usage$rss
    res$cpu[up[a$idx]] <- usage$cpu
    res$uptime[up[a$idx]] <- usage$uptime
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
