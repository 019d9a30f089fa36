#' Launch a fresh copy of a cluster node
#'
#' Starts a new worker with the same launch specification (same host, same options) as
#' `x`, for example to replace a worker that died: `cl[[2]] <- cloneNode(cl[[2]])`. The
#' nodes of a cluster are relaunched all at once, the local ones and every host's together.
#'
#' @param x A cluster node or a cluster.
#' @param \dots Named arguments that override the node's launch options.
#' @param method `"as-is"` reuses the resolved launch specification; `"vanilla"` resolves the
#' original arguments of [makeNodePSOCK()] again.
#' @return A node of the same class, or a cluster.
#' @examples
#' cl <- makeClusterPSOCK(1)
#' killNode(cl[[1]])               # the worker dies ...
#' cl[[1]] <- cloneNode(cl[[1]])   # ... and a fresh one takes its place
#' isNodeAlive(cl)
#' parallel::stopCluster(cl)
#' @export
cloneNode <- function(x, ...) UseMethod("cloneNode")

#' @export
cloneNode.default <- function(x, ...) {
  stopf("Argument", "Do not know how to clone node of class '%s'", class(x)[1L],
        fields = list(argument = "x"))
}

#' @rdname cloneNode
#' @export
cloneNode.cluster <- function(x, ..., method = c("as-is", "vanilla")) {
  method <- match.arg(method)
  res <- vector("list", length(x))
  # RichSOCKnodes are relaunched together per host, like a parallel setup.
  rich <- which(vapply(x, function(node) inherits(node, "RichSOCKnode") && !is.null(node_options(node)), logical(1)))
  options <- lapply(x[rich], clone_options, overrides = list(...), method = method)
  # All hosts at once, on one port (R/setupHosts.R); sequential ones are cloned one by one.
  batches <- Filter(function(b) length(b) > 1L || options[[b]]$setup_strategy != "sequential", setup_batches(options))
  if (length(batches) > 0L) {
    port <- clone_port(options[[batches[[1L]][1L]]]$port)
    nodes <- connect_hosts(lapply(batches, function(b) lapply(options[b], function(o) { o$port <- port; o })))
    idx <- unlist(batches)
    nodes <- unlist(nodes, recursive = FALSE)
    wanted <- vapply(x[rich[idx]], function(node) !is.null(node$session_info), logical(1))
    if (any(wanted)) nodes[wanted] <- add_cluster_session_info(as_rich_cluster(nodes[wanted]))
    res[rich[idx]] <- nodes
  }
  for (i in which(vapply(res, is.null, logical(1)))) {
    res[i] <- list(cloneNode(x[[i]], ..., method = method))
  }
  class(res) <- class(x)
  res
}

#' @rdname cloneNode
#' @export
cloneNode.RichSOCKnode <- function(x, ..., method = c("as-is", "vanilla")) {
  method <- match.arg(method)
  options <- clone_options(x, overrides = list(...), method = method)
  options$port <- clone_port(options$port)
  node <- launchNodePSOCK(options)
  if (!is.null(x$session_info)) node <- add_cluster_session_info(as_rich_cluster(list(node)))[[1L]]
  node
}

# The launch options of a new copy of `node`.
clone_options <- function(node, overrides = list(), method = "as-is") {
  options <- node_options(node)
  restarts <- if (is.numeric(options$restarts)) options$restarts else 0L
  if (!inherits(options, "makeNodePSOCKOptions")) {
    stopf("Argument", "Cannot clone this %s: it carries no launch options", class(node)[1L],
          fields = list(argument = "x"))
  }
  if (length(overrides) > 0L && (is.null(names(overrides)) || any(!nzchar(names(overrides))))) {
    stop_arg("...", "must be named arguments of makeNodePSOCK()")
  }
  if (method == "vanilla" || length(overrides) > 0L) {
    args <- options$arguments
    args[names(overrides)] <- overrides
    args$port <- options$port
    if (method == "as-is") args$worker <- options$worker
    resolved <- resolve_node_options(args)
    resolved$arguments <- options$arguments
    resolved$make_fcn <- options$make_fcn
    options <- resolved
  }
  # Our handshake works with both worker setup modes; a clone is never a dry run.
  options$restarts <- restarts + 1L
  options$dryrun <- FALSE
  options$manual <- FALSE
  options
}

# Reuse the node's port when it is free now, else pick a random free one.
clone_port <- function(port) {
  if (isTRUE(backend_port_is_free(port))) return(port)
  freePort("random")
}

as_rich_cluster <- function(nodes) {
  structure(nodes, class = c("RichSOCKcluster", "SOCKcluster", "cluster"))
}
