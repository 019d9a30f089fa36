#' Check whether the worker of a node is alive
#'
#' Local workers are probed by the Rust backend by (PID, process start time), so a PID that
#' was reused by another process reads as not alive, and an exited worker that has not been
#' reaped yet (a zombie) is not alive either. This works while the worker is busy.
#'
#' The worker is identified by the node's own record of it (host, PID and start time, made
#' when it was launched), not by `node$session_info$process$pid`: a node whose session
#' information lacks the PID (removed, or not collected with `validate = FALSE`) is still
#' probed, where the reference package answers `NA`. That record is the only one that also
#' tells a reused PID from the worker.
#'
#' @param x A cluster node or a cluster.
#' @param timeout Maximum seconds to wait for an answer (must be >= 0).
#' @param \dots Not used.
#' @return TRUE, FALSE, or NA when it cannot be determined; a logical vector for a cluster.
#' @examples
#' cl <- makeClusterPSOCK(1)
#' isNodeAlive(cl)
#' parallel::stopCluster(cl)
#' @export
isNodeAlive <- function(x, ...) UseMethod("isNodeAlive")

#' @export
isNodeAlive.default <- function(x, ...) NA

#' @rdname isNodeAlive
#' @export
isNodeAlive.cluster <- function(x, timeout = 0, ...) {
  res <- rep(NA, length(x))
  rich <- vapply(x, inherits, logical(1), "RichSOCKnode")
  for (i in which(!rich)) res[i] <- isNodeAlive(x[[i]], ...)
  if (any(rich)) res[rich] <- probe_nodes(x[rich], timeout = timeout)
  res
}

#' @rdname isNodeAlive
#' @export
isNodeAlive.RichSOCKnode <- function(x, timeout = 0, ...) {
  probe_nodes(list(x), timeout = timeout)
}

# Probe nodes: each group (local workers, a remote host) in one request, all groups at
# once, all within `timeout` seconds (0: option parallelly.ssh.timeout for remote hosts).
# A worker whose PID is unknown is NA.
probe_nodes <- function(nodes, timeout = 0) {
  check_seconds(timeout, "timeout")
  ids <- lapply(lapply(nodes, current_node), node_identity)
  res <- rep(NA, length(nodes))
  known <- which(!is.na(ids_pids(ids)))
  answers <- ask_groups(ids[known], "probe", list(timeout = timeout), timeout = ssh_probe_timeout(timeout))
  for (a in answers) {
    if (inherits(a$value, "error")) {
      warning(sprintf("Could not infer whether %d RichSOCKnode node(s) on remote host '%s' are alive. Reason reported: %s",
                      length(a$idx), a$host, conditionMessage(a$value)), call. = FALSE)
    } else {
      res[known[a$idx]] <- a$value
    }
  }
  res
}
