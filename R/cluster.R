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
# return only once they have exited (or been terminated).
stop_nodes <- function(cl, background = FALSE) {
  pids <- integer(0)
  logs <- character(0)
  remote <- list()
  forked <- list()
  servers <- character(0)
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
    process <- attr(node, "process", exact = TRUE)
    client <- process$client_pid
    if (is.character(process$fork_server)) servers <- c(servers, process$fork_server)
    if (is.character(process$fork_server) && isTRUE(id$local)) {
      # Forked by a fork server: not our child; known by PID and start time.
      if (!killed) forked[[length(forked) + 1L]] <- id
      if (is.character(id$log)) logs <- c(logs, id$log)
    } else if (isTRUE(id$local) || is.numeric(client)) {
      # Our own child processes: local workers, or the external SSH clients of remote ones.
      if (is.numeric(id$launcher_pid)) pids <- c(pids, id$launcher_pid)
      if (is.character(id$log)) logs <- c(logs, id$log)
    } else if (is.character(id$ssh) && !is.na(id$pid)) {
      # A killed worker needs no stopping, only its log removed and its connection released.
      remote[[length(remote) + 1L]] <- list(node = node, id = id, killed = killed)
    }
  }
  pids <- pids[!is.na(pids)]
  ours <- if (length(pids) > 0L) pids[backend_child_state(pids)$state != "unknown"] else integer(0)
  done_msg <- list(type = "DONE", data = NULL, tag = NULL)
  for (d in done) {
    try(serialize(done_msg, d$con, xdr = d$xdr), silent = TRUE)
    try(close(d$con), silent = TRUE)
  }
  if (length(ours) > 0L) {
    if (background) {
      backend_stop_in_background(ours, grace = 5, term_grace = 1)
    } else {
      wait_until(function() !any(backend_child_state(ours)$state == "running"), timeout = 5)
      terminate_processes(ours)
    }
  }
  if (length(forked) > 0L) {
    fpids <- vapply(forked, `[[`, integer(1), "pid")
    fstarts <- vapply(forked, function(id) as.numeric(id$start_time), numeric(1))
    if (!wait_until(function() !any(backend_probe(fpids, fstarts) %in% TRUE), timeout = 5)) {
      terminate_forked(fpids, fstarts)
    }
  }
  remove_logs(logs)
  for (group in split(remote, vapply(remote, function(r) r$id$ssh, character(1)))) {
    stop_remote_nodes(group)
  }
  if (length(servers) > 0L) fork_servers_release(servers)
  invisible(NULL)
}

# The remote workers of one host: wait up to 5 s for them to exit after DONE, terminate the
# rest, remove their logs, and close the host's connection if no other node uses it.
stop_remote_nodes <- function(group) {
  key <- group[[1L]]$id$ssh
  host <- group[[1L]]$id$host
  live <- Filter(function(r) !isTRUE(r$killed), group)
  pids <- vapply(live, function(r) r$id$pid, integer(1))
  starts <- vapply(live, function(r) as.numeric(r$id$start_time), numeric(1))
  conn <- tryCatch(ssh_key_of(group[[1L]]$node), error = function(e) NULL)
  if (!is.null(conn) && length(live) > 0L) {
    alive <- function() tryCatch(
      backend_ssh_wait(backend_ssh_submit_probe(conn, pids, starts), 10, host, "waiting for workers to exit"),
      error = function(e) NA)
    if (!wait_until(function() !any(alive() %in% TRUE), timeout = 5, interval = 0.05)) {
      remote_terminate(conn, host, pids, starts)
    }
  }
  if (!is.null(conn)) {
    logs <- unlist(lapply(group, function(r) r$id$log))
    logs <- logs[!is.na(logs) & nzchar(logs)]
    if (length(logs) > 0L) {
      try(backend_ssh_wait(backend_ssh_submit_script(conn, paste("rm -f", paste(sh_quote(logs, type = "sh"), collapse = " "))),
                           5, host, "removing worker logs"), silent = TRUE)
    }
  }
  for (r in group) ssh_release_node(key, node_key(r$node))
}
