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
#' @examples
#' cl <- autoStopCluster(makeClusterPSOCK(1))
#' print(cl)
#' rm(cl)
#' invisible(gc())  # the cluster's workers are stopped here
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
# so that no worker outlives the cluster and none lingers as a zombie. Our own local
# children are waited for by a reaper thread (all at once, woken by each exit), so
# stopCluster() returns as soon as every worker has been told; the package's exit and
# unload hooks terminate any still running.
stopCluster.RichSOCKcluster <- function(cl = NULL) {
  stop_nodes(cl, background = TRUE)
  invisible(NULL)
}

# `background`: leave the waiting for our local children to a reaper thread; otherwise
# return only once they have exited (or been terminated). Each group of nodes (the local
# workers, a remote host's) is stopped by its kind.
stop_nodes <- function(cl, background = FALSE) {
  # Stops asked for while this one gathers its own (a remote fork server released below)
  # hand their stages to it, so that they run together with those of every host.
  outer <- is.null(.package$stop_stages)
  if (outer) {
    .package$stop_stages <- list()
    on.exit(.package$stop_stages <- NULL)
  }
  ids <- list()
  # The DONE messages go out in one tight loop after the bookkeeping: each one wakes a
  # worker that then competes for the CPU with whatever the master still has to do.
  done <- list()
  for (node in cl) {
    if (is.null(node)) next
    # A node relaunched by self-healing is stopped in its newest incarnation.
    original <- node
    node <- current_node(node)
    forget_node(original)
    if (node_ended(node, "stopped")) next
    con <- node$con
    killed <- node_ended(node, "killed")
    if (!killed && inherits(con, "connection") && isTRUE(isConnectionValid(con))) {
      done[[length(done) + 1L]] <- list(con = con, xdr = node_xdr(node))
    }
    mark_node_ended(node)
    forget_node(node)
    id <- node_identity(node)
    id$killed <- killed
    ids[[length(ids) + 1L]] <- id
  }
  # Work that need not wait for the DONEs goes before them too: handing workers to a reaper
  # thread, and telling fork servers left without workers to exit once those have.
  groups <- node_groups(ids)
  early <- background & vapply(groups, function(g) is.function(g$kind$stop_before_done) && isTRUE(g$kind$stop_before_done(g$ids)), logical(1))
  for (g in groups[early]) try(g$kind$stop(g$ids, background = TRUE), silent = TRUE)
  servers <- unlist(lapply(ids, function(id) id$fork_server))
  if (background && length(servers) > 0L) fork_servers_release(servers, stopping = ids, background = TRUE)
  done_msg <- list(type = "DONE", data = NULL, tag = NULL)
  for (d in done) {
    try(serialize(done_msg, d$con, xdr = d$xdr), silent = TRUE)
    try(close(d$con), silent = TRUE)
  }
  # Stages (remote hosts): all hosts are stopped at once, each within its own grace.
  stages <- lapply(groups[!early], function(g) tryCatch(g$kind$stop(g$ids, background = background), error = function(e) NULL))
  if (!outer) {
    .package$stop_stages <- c(.package$stop_stages, stages)
    return(invisible(NULL))
  }
  stages <- c(.package$stop_stages, stages)
  .package$stop_stages <- NULL
  run_stages(stages)
  if (!background && length(servers) > 0L) fork_servers_release(servers, stopping = ids)
  invisible(NULL)
}
