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

# Probe nodes: local ones in one call to the backend, remote ones with one command per host
# (all hosts at once), each host given `timeout` seconds (0: option parallelly.ssh.timeout).
probe_nodes <- function(nodes, timeout = 0) {
  check_seconds(timeout, "timeout")
  nodes <- lapply(nodes, current_node)
  ids <- lapply(nodes, node_identity)
  res <- rep(NA, length(nodes))
  known <- vapply(ids, function(id) !is.na(id$pid), logical(1))
  local <- known & vapply(ids, function(id) isTRUE(id$local), logical(1))
  if (any(local)) {
    res[local] <- backend_probe(vapply(ids[local], `[[`, integer(1), "pid"),
                                vapply(ids[local], function(id) as.numeric(id$start_time), numeric(1)))
  }
  remote <- which(known & !local)
  answers <- ask_remote_hosts(nodes, ids, remote, "probe", timeout = timeout,
                              what = "checking whether workers are alive")
  for (a in answers) {
    if (inherits(a$value, "error")) {
      warning(sprintf("Could not infer whether %d RichSOCKnode node(s) on remote host '%s' are alive. Reason reported: %s",
                      length(a$idx), a$host, conditionMessage(a$value)), call. = FALSE)
    } else {
      res[a$idx] <- a$value
    }
  }
  res
}

# Send a probe or signal request to every remote host of `nodes[remote]` (one command per
# host, all hosts at once), then collect the answers: list(idx, host, value or error) per host.
# All of it -- reconnecting lost connections (all hosts at once) and the requests -- keeps to
# the one `timeout`; a request not answered by then is withdrawn, also on the host.
ask_remote_hosts <- function(nodes, ids, remote, kind, signal = 0L, timeout = 0, what) {
  if (length(remote) == 0L) return(list())
  budget <- ssh_probe_timeout(timeout)
  deadline <- Sys.time() + budget
  left <- function() max(as.double(deadline - Sys.time(), units = "secs"), 0.05)
  groups <- split(remote, vapply(ids[remote], remote_group, character(1)))
  hosts <- lapply(groups, function(idx) {
    options <- node_options(nodes[[idx[1L]]])
    list(idx = idx, options = options, host = ids[[idx[1L]]]$host,
         connecting = if (!is.null(options$ssh)) tryCatch(ssh_connect_submit(options, budget), error = function(e) e))
  })
  asked <- lapply(hosts, function(h) {
    idx <- h$idx
    pids <- vapply(ids[idx], `[[`, integer(1), "pid")
    starts <- vapply(ids[idx], function(id) as.numeric(id$start_time), numeric(1))
    ticket <- tryCatch(
      if (is.null(h$options$ssh)) {
        # An external client answers at once (synchronously).
        external_request(h$options, kind, pids, starts, signal = signal, timeout = budget)
      } else {
        key <- ssh_connect_collect(h$connecting, left(), h$host)
        if (kind == "probe") {
          backend_ssh_submit_probe(key, pids, starts, timeout = left())
        } else {
          backend_ssh_submit_signal(key, pids, starts, signal, timeout = left())
        }
      },
      error = function(e) e
    )
    list(idx = idx, host = h$host, ticket = ticket)
  })
  lapply(asked, function(a) {
    value <- if (inherits(a$ticket, "error") || is.logical(a$ticket)) a$ticket else tryCatch(
      backend_ssh_wait(a$ticket, left(), a$host, what),
      error = function(e) e
    )
    list(idx = a$idx, host = a$host, value = value)
  })
}

remote_group <- function(id) if (is.character(id$ssh)) id$ssh else paste0("external:", id$host)

# The held connection of a remote node, reopened if it was lost (within `timeout` seconds).
ssh_key_of <- function(node, timeout = ssh_probe_timeout(0)) {
  options <- node_options(node)
  if (!is.null(options$ssh)) return(ssh_connection(options, timeout = timeout)$key)
  stopf("Ssh", "No SSH connection is known for the node on host '%s'", as.character(node$host))
}
