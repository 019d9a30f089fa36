# Cluster objects: coercion, concatenation, stopping, automatic stopping.

#' Coerce an object to a cluster
#'
#' @param x A cluster, a node, or a list of nodes and clusters.
#' @param \dots Not used.
#' @return A cluster; `c()` of clusters keeps the classes they share.
#' @examples
#' cl <- makeClusterPSOCK(2)
#' cl2 <- c(cl[1], cl[2])
#' parallel::stopCluster(cl)
#' @export
as.cluster <- function(x, ...) UseMethod("as.cluster")

#' @export
as.cluster.cluster <- function(x, ...) x

#' @export
as.cluster.list <- function(x, ...) {
  clusters <- lapply(x, as.cluster, ...)
  Reduce(c, clusters)
}

#' @export
as.cluster.SOCKnode <- function(x, ...) structure(list(x), class = c("SOCKcluster", "cluster"))

#' @export
as.cluster.SOCK0node <- as.cluster.SOCKnode

#' @export
as.cluster.RichSOCKnode <- function(x, ...) {
  structure(list(x), class = c("RichSOCKcluster", "SOCKcluster", "cluster"))
}

#' @export
as.cluster.default <- function(x, ...) {
  stopf("Argument", "Cannot coerce an object of class '%s' to a cluster", class(x)[1L],
        fields = list(argument = "x"))
}

#' @rdname as.cluster
#' @param recursive Not used.
#' @export
c.cluster <- function(..., recursive = FALSE) {
  clusters <- lapply(list(...), as.cluster)
  classes <- Reduce(intersect, lapply(clusters, class))
  if (!"cluster" %in% classes) classes <- c(classes, "cluster")
  nodes <- do.call(c, lapply(clusters, unclass))
  dups <- sum(duplicated(nodes))
  if (dups > 0L) warning(sprintf("The combined cluster contains %d duplicated nodes", dups), call. = FALSE)
  structure(nodes, class = classes)
}

#' Stop a cluster when it is garbage collected
#'
#' @param cl A cluster.
#' @param debug If TRUE, print a message when the finalizer runs.
#' @return The cluster, with attribute `gcMe`.
#' @export
autoStopCluster <- function(cl, debug = FALSE) {
  if (is.environment(attr(cl, "gcMe"))) return(cl)
  env <- new.env(parent = emptyenv())
  env$cluster <- cl
  attr(cl, "gcMe") <- env
  reg.finalizer(env, function(e) {
    if (debug) message("Finalizing cluster ...")
    try(parallel::stopCluster(e$cluster), silent = TRUE)
  }, onexit = TRUE)
  cl
}

# stopCluster() for our clusters: tell each worker to finish (DONE), close the connections,
# give idle workers up to 5 s to exit, then terminate what is left and reap every process,
# so that no worker outlives the cluster and none lingers as a zombie.
stopCluster.RichSOCKcluster <- function(cl = NULL) {
  stop_nodes(cl)
  invisible(NULL)
}

stop_nodes <- function(cl) {
  pids <- integer(0)
  logs <- character(0)
  for (node in cl) {
    if (is.null(node)) next
    con <- node$con
    if (inherits(con, "connection") && isTRUE(isConnectionValid(con))) {
      try(serialize(list(type = "DONE", data = NULL, tag = NULL), con, xdr = node_xdr(node)), silent = TRUE)
      try(close(con), silent = TRUE)
    }
    forget_node_state(node)
    id <- node_identity(node)
    if (isTRUE(id$local) && is.numeric(id$launcher_pid)) pids <- c(pids, id$launcher_pid)
    if (is.character(id$log)) logs <- c(logs, id$log)
  }
  pids <- pids[!is.na(pids)]
  if (length(pids) > 0L) {
    ours <- pids[backend_child_state(pids)$state != "unknown"]
    wait_until(function() !any(backend_child_state(ours)$state == "running"), timeout = 5)
    terminate_processes(ours)
  }
  remove_logs(logs)
  invisible(NULL)
}
