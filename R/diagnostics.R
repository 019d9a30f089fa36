# Why a worker died, and what it is using while alive: the columns alive, exit, rss, cpu,
# uptime and restarts of summary(), and the cause of death that print() adds for a dead
# node. Local workers are answered by the Rust backend (child handles, sysinfo); remote
# ones by the held SSH connection (alive only, for now).

# How a local worker ended, from its child handle: "exit status 1", "killed by signal 9
# (SIGKILL) ...", or NA when it runs or is not a child of this session.
node_exit_causes <- function(nodes) {
  causes <- rep(NA_character_, length(nodes))
  ids <- lapply(nodes, node_identity)
  local <- which(vapply(ids, function(id) isTRUE(id$local) && is.numeric(id$launcher_pid) && !is.na(id$launcher_pid), logical(1)))
  if (length(local) == 0L) return(causes)
  st <- backend_child_state(vapply(ids[local], `[[`, integer(1), "launcher_pid"))
  for (k in seq_along(local)) {
    causes[local[k]] <- exit_cause(st$state[k], st$status[k], st$signal[k])
  }
  causes
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

# Extra summary columns for the nodes of a cluster.
node_health <- function(nodes, timeout = 5) {
  n <- length(nodes)
  res <- data.frame(alive = rep(NA, n), exit = NA_character_, rss = NA_real_, cpu = NA_real_,
                    uptime = NA_real_, restarts = NA_integer_, stringsAsFactors = FALSE)
  rich <- which(vapply(nodes, function(node) inherits(node, "RichSOCKnode"), logical(1)))
  if (length(rich) == 0L) return(res)
  res$alive[rich] <- suppressWarnings(probe_nodes(nodes[rich], timeout = timeout))
  res$restarts[rich] <- vapply(nodes[rich], function(node) {
    r <- attr(node, "options", exact = TRUE)$restarts
    if (is.numeric(r)) as.integer(r) else 0L
  }, integer(1))
  dead <- rich[res$alive[rich] %in% FALSE]
  if (length(dead) > 0L) {
    causes <- node_exit_causes(nodes[dead])
    causes[is.na(causes)] <- "exited (cause unknown)"
    res$exit[dead] <- causes
  }
  ids <- lapply(nodes[rich], node_identity)
  local <- rich[vapply(ids, function(id) isTRUE(id$local) && !is.na(id$pid), logical(1)) & res$alive[rich] %in% TRUE]
  if (length(local) > 0L) {
    usage <- backend_usage(vapply(nodes[local], function(node) node_identity(node)$pid, integer(1)))
    res$rss[local] <- usage$rss
    res$cpu[local] <- usage$cpu
    res$uptime[local] <- usage$uptime
  }
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
