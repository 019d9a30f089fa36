#' Send a signal to the worker of a node
#'
#' The signal goes to the worker process by (PID, process start time), so a PID that was
#' reused by another process is never signalled. After a successful SIGTERM or SIGKILL, the
#' node's socket connection is closed and a local worker's temporary directory is removed.
#'
#' @param x A cluster node or a cluster.
#' @param signal The signal number, 1..64 (default SIGTERM).
#' @param timeout Maximum seconds to wait for an answer (must be >= 0).
#' @param \dots Not used.
#' @return TRUE if the signal was sent, FALSE if not, NA if unsupported; a logical vector for
#' a cluster.
#' @examples
#' cl <- makeClusterPSOCK(1)
#' killNode(cl)
#' parallel::stopCluster(cl)
#' @export
killNode <- function(x, signal = tools::SIGTERM, ...) {
  if (!is.numeric(signal) || length(signal) != 1L || is.na(signal) || !is.finite(signal) ||
      signal < 1 || signal > 64 || signal != round(signal)) {
    stop_arg("signal", "must be a single signal number in 1..64: %s", deparse1(signal))
  }
  UseMethod("killNode")
}

#' @export
killNode.default <- function(x, signal = tools::SIGTERM, ...) {
  warning(sprintf("killNode() is not supported for this '%s'. Signal %d was not sent",
                  class(x)[1L], as.integer(signal)), call. = FALSE)
  NA
}

#' @rdname killNode
#' @export
killNode.cluster <- function(x, signal = tools::SIGTERM, timeout = 0, ...) {
  res <- rep(NA, length(x))
  rich <- vapply(x, inherits, logical(1), "RichSOCKnode")
  for (i in which(!rich)) res[i] <- killNode(x[[i]], signal = signal, ...)
  if (any(rich)) res[rich] <- signal_nodes(x[rich], signal = signal, timeout = timeout)
  res
}

#' @rdname killNode
#' @export
killNode.RichSOCKnode <- function(x, signal = tools::SIGTERM, timeout = 0, ...) {
  signal_nodes(list(x), signal = signal, timeout = timeout)
}

# Signal nodes: each group (local workers, a remote host) in one request, all groups at
# once. After a successful SIGTERM or SIGKILL a node's connection is closed and what its
# worker left behind (its R temporary directory) is removed.
signal_nodes <- function(nodes, signal, timeout = 0) {
  check_seconds(timeout, "timeout")
  nodes <- lapply(nodes, current_node)
  signal <- as.integer(signal)
  ids <- lapply(nodes, node_identity)
  res <- rep(NA, length(nodes))
  known <- which(!is.na(ids_pids(ids)))
  for (i in setdiff(seq_along(ids), known)) {
    warning(sprintf("killNode() is not supported for this 'RichSOCKnode' (its process ID is unknown). Signal %d was not sent", signal), call. = FALSE)
  }
  answers <- ask_groups(ids[known], "signal", list(signal = signal, timeout = timeout),
                        timeout = ssh_probe_timeout(timeout))
  for (a in answers) {
    if (inherits(a$value, "error")) {
      warning(sprintf("Could not kill %d RichSOCKnode node(s) on remote host '%s'. Reason reported: %s",
                      length(a$idx), a$host, conditionMessage(a$value)), call. = FALSE)
    } else {
      res[known[a$idx]] <- a$value %in% TRUE
    }
  }
  if (signal %in% c(tools::SIGTERM, tools::SIGKILL)) {
    for (i in which(res %in% TRUE)) after_kill(nodes[[i]], ids[[i]])
  }
  res
}

after_kill <- function(node, id) {
  if (node_ended(node)) return(invisible())
  mark_node_ended(node, "killed")
  try(close(node$con), silent = TRUE)
  forget_node_state(node)
  try(node_kind(id$kind)$after_kill(id), silent = TRUE)
  invisible()
}
