# Task traffic on our nodes: base R's PSOCK protocol, unchanged (one serialize() per message
# on node$con), plus bookkeeping that keeps stale results out of later calls.
#
# When a parallel call (parLapply(), clusterEvalQ(), ...) fails part-way because a worker
# died or the user interrupted it, the other workers still deliver their results for that
# call, and base parallel hands them to the *next* call as if they were its own.
#
# So a task sent from inside one of parallel's bulk calls (clusterCall(),
# staticClusterApply(), dynamicClusterApply(), which every higher-level function uses) is
# numbered: its tag travels as list(parallelly_seq = <n>, tag = <original tag>), and the
# worker echoes it back. The node remembers which call frame sent task n. When the result
# comes back and that frame is no longer running, the call was abandoned: the result is
# dropped and the next message is read. Tasks sent outside bulk calls (future sends its own
# and may pipeline them) are left untouched.

# The bookkeeping lives in a registry of this package, keyed by the node's process
# identity, not in the node: a node object must not change as it is used, because future
# identifies a cluster by a hash of its serialized nodes.
node_key <- function(node) {
  process <- attr(node, "process", exact = TRUE)
  if (!is.numeric(process$pid) || is.na(process$pid)) return(NULL)
  host <- if (is.character(process$ssh)) process$ssh else "localhost"
  sprintf("%s/%d@%.0f", host, as.integer(process$pid), as.numeric(process$start_time))
}

node_state <- function(node) {
  key <- node_key(node)
  if (is.null(key)) return(NULL)
  states <- .package$node_states
  state <- get0(key, envir = states, inherits = FALSE)
  if (is.null(state)) {
    state <- new.env(parent = emptyenv())
    state$seq <- 0L
    state$senders <- new.env(parent = emptyenv())  # task number -> frame of the sending call
    assign(key, state, envir = states)
  }
  state
}

# Nodes that were stopped or killed. R reuses connection indices, and a new connection can
# even get the freed memory of the old one, so a closed node's `con` may look valid again:
# a second stopCluster() (e.g. by autoStopCluster()'s finalizer) must not send DONE to
# whatever connection now has that index.
# `how` is "killed" (the worker was signalled) or "stopped" (stopCluster() cleaned up).
mark_node_ended <- function(node, how = "stopped") {
  key <- node_key(node)
  if (!is.null(key)) assign(key, how, envir = .package$ended_nodes)
}

node_ended <- function(node, how = c("killed", "stopped")) {
  key <- node_key(node)
  !is.null(key) && isTRUE(get0(key, envir = .package$ended_nodes, inherits = FALSE) %in% how)
}

forget_node_state <- function(node) {
  key <- node_key(node)
  if (!is.null(key) && exists(key, envir = .package$node_states, inherits = FALSE)) {
    rm(list = key, envir = .package$node_states)
  }
}

node_xdr <- function(node) !inherits(node, "SOCK0node")

# The frame of the innermost bulk call of parallel on the stack, or NULL. Results of a
# load-balanced call are read by recvOneData() of the *cluster*, which is ours only for a
# RichSOCKcluster (base parallel's would not unwrap our tags): those calls are left alone.
bulk_call_frame <- function() {
  bulk <- .package$bulk_functions
  for (i in rev(seq_len(sys.nframe()))) {
    fun <- sys.function(i)
    for (name in names(bulk)) {
      if (!identical(fun, bulk[[name]])) next
      frame <- sys.frame(i)
      if (name == "dynamicClusterApply" && !inherits(get0("cl", envir = frame, inherits = FALSE), "RichSOCKcluster")) {
        return(NULL)
      }
      return(frame)
    }
  }
  NULL
}

which_frame <- function(frame) {
  frames <- sys.frames()
  for (i in rev(seq_along(frames))) if (identical(frames[[i]], frame)) return(i)
  0L
}

frame_is_running <- function(frame) which_frame(frame) > 0L

sendData.RichSOCKnode <- function(node, data) {
  state <- node_state(node)
  if (!is.null(state) && identical(data$type, "EXEC")) {
    frame <- bulk_call_frame()
    if (!is.null(frame)) {
      state$seq <- state$seq + 1L
      assign(as.character(state$seq), frame, envir = state$senders)
      data$data$tag <- list(parallelly_seq = state$seq, tag = data$data$tag)
    }
  }
  serialize(data, node$con, xdr = node_xdr(node))
  invisible(NULL)
}

# Unwrap our tag; NULL when the message answers a call that was abandoned.
unwrap_message <- function(state, msg) {
  tag <- msg$tag
  if (is.null(state) || !is.list(tag) || is.null(names(tag)) || !"parallelly_seq" %in% names(tag)) return(msg)
  key <- as.character(tag$parallelly_seq)
  frame <- get0(key, envir = state$senders, inherits = FALSE)
  if (!is.null(frame)) rm(list = key, envir = state$senders)
  if (is.null(frame) || !frame_is_running(frame)) return(NULL)
  msg["tag"] <- list(tag$tag)
  msg
}

recvData.RichSOCKnode <- function(node) {
  state <- node_state(node)
  repeat {
    msg <- unwrap_message(state, unserialize(node$con))
    if (!is.null(msg)) return(msg)
  }
}

recvOneData.RichSOCKcluster <- function(cl) {
  cons <- lapply(cl, function(node) node$con)
  repeat {
    ready <- socketSelect(cons)
    if (!any(ready)) next
    n <- which.max(ready)
    msg <- unwrap_message(node_state(cl[[n]]), unserialize(cons[[n]]))
    if (!is.null(msg)) return(list(node = n, value = msg))
  }
}

# parallel's transport generics are internal to it: register our methods in its S3 table.
register_parallel_methods <- function() {
  ns <- asNamespace("parallel")
  .package$node_states <- new.env(parent = emptyenv())
  .package$ended_nodes <- new.env(parent = emptyenv())
  .package$bulk_functions <- list(
    clusterCall = get("clusterCall", envir = ns),
    staticClusterApply = get("staticClusterApply", envir = ns),
    dynamicClusterApply = get("dynamicClusterApply", envir = ns)
  )
  registerS3method("sendData", "RichSOCKnode", sendData.RichSOCKnode, envir = ns)
  registerS3method("recvData", "RichSOCKnode", recvData.RichSOCKnode, envir = ns)
  registerS3method("recvOneData", "RichSOCKcluster", recvOneData.RichSOCKcluster, envir = ns)
}
