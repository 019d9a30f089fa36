#' Check whether the worker of a node is alive
#'
#' Local workers are probed by the Rust backend by (PID, process start time), so a PID that
#' was reused by another process reads as not alive, and an exited worker that has not been
#' reaped yet (a zombie) is not alive either. This works while the worker is busy.
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

#' @export
isNodeAlive.cluster <- function(x, ...) {
  vapply(x, FUN = isNodeAlive, FUN.VALUE = NA, ...)
}

#' @export
isNodeAlive.RichSOCKnode <- function(x, timeout = 0, ...) {
  check_seconds(timeout, "timeout")
  id <- node_identity(x)
  if (is.na(id$pid)) return(NA)
  if (!id$local) {
    warning(sprintf("Could not infer whether %s node on remote host '%s' is alive. Reason reported: remote nodes are not yet supported by this version of parallelly",
                    sQuote(class(x)[1L], FALSE), id$host), call. = FALSE)
    return(NA)
  }
  backend_probe(id$pid, id$start_time)
}
