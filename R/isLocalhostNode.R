#' Check whether a node runs on the local machine, or is a forked node
#'
#' @param node A cluster node or a cluster.
#' @param \dots Not used.
#' @return TRUE, FALSE or NA; a logical vector for a cluster.
#' @examples
#' cl <- makeClusterPSOCK(1)
#' isLocalhostNode(cl)
#' isForkedNode(cl)
#' parallel::stopCluster(cl)
#' @export
isLocalhostNode <- function(node, ...) UseMethod("isLocalhostNode")

#' @export
isLocalhostNode.default <- function(node, ...) NA

#' @export
isLocalhostNode.SOCKnode <- function(node, ...) is_localhost(node$host)

#' @export
isLocalhostNode.SOCK0node <- isLocalhostNode.SOCKnode

#' @export
isLocalhostNode.forknode <- function(node, ...) TRUE

#' @export
isLocalhostNode.RichSOCKnode <- function(node, ...) {
  localhost <- attr(node$host, "localhost", exact = TRUE)
  if (is.logical(localhost) && length(localhost) == 1L) return(localhost)
  NextMethod()
}

#' @export
isLocalhostNode.cluster <- function(node, ...) vapply(node, FUN = isLocalhostNode, FUN.VALUE = NA, ...)

#' @rdname isLocalhostNode
#' @export
isForkedNode <- function(node, ...) UseMethod("isForkedNode")

#' @export
isForkedNode.default <- function(node, ...) NA

#' @export
isForkedNode.forknode <- function(node, ...) TRUE

#' @export
isForkedNode.cluster <- function(node, ...) vapply(node, FUN = isForkedNode, FUN.VALUE = NA, ...)
