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

#' @export
killNode.cluster <- function(x, signal = tools::SIGTERM, ...) {
  vapply(x, FUN = killNode, signal = signal, FUN.VALUE = NA, ...)
}

#' @export
killNode.RichSOCKnode <- function(x, signal = tools::SIGTERM, timeout = 0, ...) {
  check_seconds(timeout, "timeout")
  id <- node_identity(x)
  if (is.na(id$pid)) return(NextMethod())
  if (!id$local) {
    warning(sprintf("Could not kill %s node on remote host '%s'. Reason reported: remote nodes are not yet supported by this version of parallelly",
                    sQuote(class(x)[1L], FALSE), id$host), call. = FALSE)
    return(FALSE)
  }
  sent <- backend_signal(id$pid, as.integer(signal), start_time = id$start_time)
  if (sent && signal %in% c(tools::SIGTERM, tools::SIGKILL)) {
    try(close(x$con), silent = TRUE)
    forget_node_state(x)
    tmp <- x$session_info$tempdir
    if (is.character(tmp) && length(tmp) == 1L && dir.exists(tmp)) {
      unlink(tmp, recursive = TRUE, force = TRUE)
    }
  }
  sent
}
