# Task traffic on our nodes: base R's PSOCK protocol, unchanged (one serialize() per message
# on node$con), plus bookkeeping that keeps stale results out of later calls.
#
# When a parallel call (parLapply(), clusterEvalQ(), ...) fails part-way because a worker
# died or the user interrupted it, the other workers still deliver their results for that
# call, and base parallel hands them to the *next* call as if they were its own.
#
# Every higher-level function of parallel sends through one of three bulk calls
# (clusterCall(), staticClusterApply(), dynamicClusterApply()), and each node answers its
# tasks in order. So each node counts the results it owes to the bulk call that last sent
# it a task. When a *different* bulk call sends to the node while results are still owed,
# the earlier call has ended without reading them: that many results are dropped before
# the node's next result is delivered. Tasks sent outside bulk calls (future sends its
# own, and may pipeline them) are not counted. This costs a few microseconds a task.

# The bookkeeping lives in a registry of this package, keyed by the node's process
# identity, not in the node: a node object must not change as it is used, because future
# identifies a cluster by a hash of its serialized nodes.
node_key <- function(node) {
  process <- attr(node, "process", exact = TRUE)
  if (is.character(process$key)) return(process$key)
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
    state$call <- NULL    # frame of the bulk call that last sent this node a task
    state$owed <- 0L      # results that call has not read yet
    state$discard <- 0L   # results owed to calls that have ended
    state$healing <- healing_on(node)  # read once: asked for every message
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

# The frame of the bulk call that is sending, or NULL. Below this function the stack is
# sendData.RichSOCKnode() <- sendData() <- postNode() <- sendCall() <- the bulk call, or
# <- submit() <- dynamicClusterApply() for a load-balanced call (tests pin this down). Results
# of a load-balanced call are read by recvOneData() of the *cluster*, which counts only for
# a RichSOCKcluster, so other clusters' load-balanced calls are not counted.
bulk_call_frame <- function(extra = 0L) {
  bulk <- .package$bulk_functions
  top <- sys.nframe() - extra
  if (top <= 6L) return(NULL)
  fun <- sys.function(top - 5L)
  if (identical(fun, bulk$clusterCall) || identical(fun, bulk$staticClusterApply)) return(sys.frame(top - 5L))
  if (identical(sys.function(top - 6L), bulk$dynamicClusterApply)) {
    frame <- sys.frame(top - 6L)
    if (inherits(get0("cl", envir = frame, inherits = FALSE), "RichSOCKcluster")) return(frame)
  }
  NULL
}

sendData.RichSOCKnode <- function(node, data) {
  state <- node_state(node)
  if (isTRUE(state$healing)) return(send_healing(node, data, state))
  # The common path, kept short: it runs for every task.
  if (!is.null(state) && identical(data$type, "EXEC")) {
    frame <- bulk_call_frame()  # here, not as an argument: the frame count must be exact
    if (!is.null(frame)) count_owed(state, frame)
  }
  serialize(data, node$con, xdr = node_xdr(node))
  invisible(NULL)
}

# One more result owed to the bulk call `frame`: whatever an earlier call did not
# read is stale from now on.
count_owed <- function(state, frame) {
  if (!identical(state$call, frame)) {
    state$discard <- state$discard + state$owed
    state$owed <- 0L
    state$call <- frame
  }
  state$owed <- state$owed + 1L
  invisible()
}

# sendData() with self-healing: a broken node is relaunched before the task is sent, and
# the task is remembered so that it can be sent again should the worker die with it.
send_healing <- function(node, data, state) {
  cur <- current_node(node)
  exec <- identical(data$type, "EXEC")
  if (exec && node_broken(cur)) cur <- relaunch(node, cur)
  frame <- if (exec) bulk_call_frame(extra = 1L)
  if (!is.null(frame)) {
    state <- node_state(cur)
    if (!is.null(state)) count_owed(state, frame)
  }
  if (exec) {
    l <- lineage(node)
    l$task <- data
    l$where <- task_position(frame, data)
    l$attempts <- 0L
    l$causes <- character(0)
  }
  sent <- tryCatch({ serialize(data, cur$con, xdr = node_xdr(cur)); TRUE }, error = function(e) e)
  if (!isTRUE(sent)) {
    cur <- relaunch(node, cur)
    serialize(data, cur$con, xdr = node_xdr(cur))
  }
  invisible(NULL)
}

# Whether a worker can no longer take work (only asked when self-healing is on).
node_broken <- function(cur) {
  node_ended(cur) || !isTRUE(isConnectionValid(cur$con)) || identical(suppressWarnings(isNodeAlive(cur, timeout = 5)), FALSE)
}

# Whether a message just read from a node is stale (and must be dropped).
drop_stale <- function(state) {
  if (is.null(state)) return(FALSE)
  if (state$discard > 0L) {
    state$discard <- state$discard - 1L
    return(TRUE)
  }
  if (state$owed > 0L) state$owed <- state$owed - 1L
  FALSE
}

# A result arrived from `cur`: the task it answered is done, its host healthy.
task_done <- function(node, cur) {
  l <- get0(node_key(node) %||% "", envir = .package$lineages, inherits = FALSE)
  if (!is.null(l)) {
    l$task <- NULL
    l$attempts <- 0L
    l$causes <- character(0)
  }
  host_ok(cur)
}

recvData.RichSOCKnode <- function(node) {
  state <- node_state(node)
  healing <- isTRUE(state$healing)
  cur <- node
  if (healing) {
    cur <- current_node(node)
    state <- node_state(cur)
  }
  repeat {
    msg <- if (healing) tryCatch(unserialize(cur$con), error = function(e) e) else unserialize(cur$con)
    if (inherits(msg, "error")) {
      cur <- recover_from_crash(node, cur, msg)
      state <- node_state(cur)
      next
    }
    if (drop_stale(state)) next
    if (healing) task_done(node, cur)
    return(msg)
  }
}

recvOneData.RichSOCKcluster <- function(cl) {
  repeat {
    curs <- lapply(cl, current_node)
    cons <- lapply(curs, function(node) node$con)
    ready <- socketSelect(cons)
    if (!any(ready)) next
    n <- which.max(ready)
    healing <- healing_on(cl[[n]])
    msg <- if (healing) tryCatch(unserialize(cons[[n]]), error = function(e) e) else unserialize(cons[[n]])
    if (inherits(msg, "error")) {
      recover_from_crash(cl[[n]], curs[[n]], msg)
      next
    }
    if (drop_stale(node_state(curs[[n]]))) next
    if (healing) task_done(cl[[n]], curs[[n]])
    return(list(node = n, value = msg))
  }
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# parallel's transport generics are internal to it: register our methods in its S3 table.
register_parallel_methods <- function() {
  ns <- asNamespace("parallel")
  .package$node_states <- new.env(parent = emptyenv())
  .package$ended_nodes <- new.env(parent = emptyenv())
  .package$incarnations <- new.env(parent = emptyenv())   # see R/selfHealing.R
  .package$lineages <- new.env(parent = emptyenv())
  .package$host_failures <- new.env(parent = emptyenv())
  .package$replaced_cons <- new.env(parent = emptyenv())
  .package$bulk_functions <- list(
    clusterCall = get("clusterCall", envir = ns),
    staticClusterApply = get("staticClusterApply", envir = ns),
    dynamicClusterApply = get("dynamicClusterApply", envir = ns)
  )
  registerS3method("sendData", "RichSOCKnode", sendData.RichSOCKnode, envir = ns)
  registerS3method("recvData", "RichSOCKnode", recvData.RichSOCKnode, envir = ns)
  registerS3method("recvOneData", "RichSOCKcluster", recvOneData.RichSOCKcluster, envir = ns)
}
