# Task traffic on our nodes: base R's PSOCK protocol (one serialize() per message on
# node$con), plus bookkeeping that keeps stale results out of later calls.
#
# When a parallel call (parLapply(), clusterEvalQ(), ...) fails part-way because a worker
# died or the user interrupted it, the other workers still deliver their results for that
# call, and base parallel hands them to the *next* call as if they were its own.
#
# So every task we send carries a sequence number of its node in the message's tag (the
# worker echoes the tag back unread); the caller's own tag rides along and is put back when
# the result arrives. Results are read in the order their tasks were sent, and a task sent
# to a node whose earlier results were not read yet is either pipelining (as a caller may do
# on purpose) or a new call after an abandoned one. It is the second exactly when a send or
# a receive of ours was abandoned (an error or an interrupt left it) after those earlier
# tasks were sent: then their results are stale and are dropped when they arrive. Nothing
# here depends on who calls (parallel, future, foreach, a wrapper or trace()d function), and
# it costs one environment lookup and a few integer comparisons a message.

# The bookkeeping lives in a registry of this package, keyed by the node's process
# identity, not in the node: a node object must not change as it is used, because future
# identifies a cluster by a hash of its serialized nodes.
node_key <- function(node) {
  process <- attr(node, "process", exact = TRUE)
  if (is.character(process$key)) return(process$key)
  if (!is.numeric(process$pid) || is.na(process$pid)) return(NULL)
  host <- if (is.character(process$ssh)) process$ssh else "localhost"
  format_node_key(host, process$pid, start_stamp(process$start_time))
}

# A node's bookkeeping: one lookup by the key its process record carries (every node we
# make has one), computed only for nodes made without it.
node_state <- function(node) {
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  if (!is.character(key)) {
    key <- node_key(node)
    if (is.null(key)) return(NULL)
  }
  states <- .package$node_states
  state <- .subset2(states, key)
  if (is.null(state)) {
    state <- new.env(parent = emptyenv())
    # The numbers of the last task sent and the last result read, the first number that is
    # not stale, and .package$aborts when the last task was sent (src/rust/src/task_wire.rs).
    state$numbers <- backend_task_numbers()
    # Read once, as they are needed for every message.
    state$healing <- healing_on(node)
    state$xdr <- node_xdr(node)
    state$local <- isTRUE(isLocalhostNode(node))
    assign(key, state, envir = states)
  }
  state
}

# Nodes that were stopped or killed. R reuses connection indices, and a new connection can
# even get the freed memory of the old one, so a closed node's `con` may look valid again:
# a second stopCluster() (e.g. by autoStopCluster()'s finalizer) must not send DONE to
# whatever connection now has that index.
# `how` is "killed" (the worker was signalled) or "stopped" (stopCluster() cleaned up).
# The mark lives as long as the node's connection object (R/nodeOptions.R), which is what a
# second stopCluster() would write to: not forever.
mark_node_ended <- function(node, how = "stopped") {
  key <- node_key(node)
  if (is.null(key)) return(invisible())
  if (!set_node_entry(node, "ended", how)) assign(key, how, envir = node_table("ended"))
  invisible()
}

node_ended <- function(node, how = c("killed", "stopped")) {
  key <- node_key(node)
  !is.null(key) && isTRUE(get0(key, envir = node_table("ended"), inherits = FALSE) %in% how)
}

forget_node_state <- function(node) {
  key <- node_key(node)
  if (!is.null(key) && exists(key, envir = .package$node_states, inherits = FALSE)) {
    rm(list = key, envir = .package$node_states)
  }
  invisible()
}

node_xdr <- function(node) !inherits(node, "SOCK0node")

# Called when a send or receive of ours is left by an error or an interrupt: tasks sent
# before now whose results were not read belong to a call that has ended.
note_abort <- function() .package$aborts <- .package$aborts + 1L

# Number a task for its node. The number is an attribute of the caller's tag, so that a tag
# read by code that does not know ours (base parallel's recvOneData() for a plain
# SOCKcluster holding our nodes) still works as the job index it is; a NULL tag, which cannot
# carry attributes, becomes FALSE numbered with the number negated. A tag of another type (an
# environment or a function, which attributes would change in place) leaves the task
# unnumbered; so are messages other than EXEC.
#
# Also: a task that calls one of the base functions that parallel's calls send for every
# task (eval for clusterEvalQ(), lapply for parLapply()) names it instead of carrying the
# function. A worker's do.call() finds it by that name from the worker loop's frame, whose
# enclosure reaches base before any global variable, so it runs the same function; neither
# end then serializes the function's byte code (a third of a small task's message).
#
# Done by the Rust library (src/rust/src/task_wire.rs: in R this was a sixth of the master's
# work for a tiny task). It asks R (NULL) only when the task names eval or lapply and the
# wire_names check has not run yet or option parallelly.internals.disable is set.
number_task <- function(state, data) {
  numbers <- state$numbers
  out <- backend_number_task(numbers, data, .package$aborts, .subset2(.package$internals_ok, "wire_names"), FALSE)
  if (is.null(out)) out <- backend_number_task(numbers, data, .package$aborts, internal_ok("wire_names"), TRUE)
  out
}

# A message read from a node, with the caller's tag as it was; NULL if it is stale (Rust,
# as number_task()).
accept_message <- function(state, msg) backend_accept_message(if (!is.null(state)) state$numbers, msg)

sendData.RichSOCKnode <- function(node, data) {
  # The common path, kept short: it runs for every task. Every R call on it costs about as
  # much as the work (a closure call ~4,000 instructions): node_state()'s look-up and
  # number_task()'s first try are written out here, and the Rust routine is called
  # directly. (`ascii = FALSE` given, serialize() need not ask the connection's summary().)
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  state <- if (is.character(key)) .subset2(.package$node_states, key)
  if (is.null(state)) state <- node_state(node)
  if (is.null(state)) return(invisible(serialize(data, .subset2(node, "con"), xdr = node_xdr(node), ascii = FALSE)))
  if (state$healing) return(send_healing(node, data, state))
  out <- .Call(wrap__rs_number_task, state$numbers, data, .package$aborts, .subset2(.package$internals_ok, "wire_names"), FALSE)
  if (is.null(out)) out <- number_task(state, data)
  done <- FALSE
  on.exit(if (!done) note_abort())
  serialize(out, .subset2(node, "con"), xdr = state$xdr, ascii = FALSE)
  done <- TRUE
  invisible(NULL)
}

# sendData() with self-healing: a broken node is relaunched before the task is sent, and
# the task is remembered so that it can be sent again should the worker die with it.
send_healing <- function(node, data, state) {
  cur <- current_node(node)
  exec <- identical(data$type, "EXEC")
  if (exec && node_broken(cur)) cur <- relaunch(node, cur)
  if (exec) {
    where <- task_position(data)
    if (!is.null(state)) data <- number_task(state, data)
    l <- lineage(node)
    l$task <- data
    l$where <- where
    l$attempts <- 0L
    l$causes <- character(0)
  }
  done <- FALSE
  on.exit(if (!done) note_abort())
  sent <- tryCatch({ serialize(data, cur$con, xdr = node_xdr(cur)); TRUE }, error = function(e) e)
  if (!isTRUE(sent)) {
    cur <- relaunch(node, cur)
    serialize(data, cur$con, xdr = node_xdr(cur))
  }
  done <- TRUE
  invisible(NULL)
}

# Whether a worker can no longer take work (only asked when self-healing is on).
node_broken <- function(cur) {
  node_ended(cur) || !isTRUE(isConnectionValid(cur$con)) || identical(suppressWarnings(isNodeAlive(cur, timeout = 5)), FALSE)
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
  # As sendData(): node_state()'s look-up written out, the Rust routine called directly.
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  state <- if (is.character(key)) .subset2(.package$node_states, key)
  if (is.null(state)) state <- node_state(node)
  if (!is.null(state) && state$healing) return(recv_healing(node, state))
  con <- .subset2(node, "con")
  numbers <- if (!is.null(state)) state$numbers
  done <- FALSE
  on.exit(if (!done) note_abort())
  # A local worker's answer is polled for briefly first (R/spinWait.R), unless the spin
  # rests (the machine was busy): that test is written out here, as it is all a read does
  # under load (a call of spin_for_input() cost ~4,000 instructions, a tenth of our part).
  local <- !is.null(state) && state$local
  since <- NULL
  if (local) {
    rest <- .package$spin_rest
    if (rest > 0L) .package$spin_rest <- rest - 1L else since <- spin_for_input(list(con))
  }
  repeat {
    msg <- .Call(wrap__rs_accept_message, numbers, if (local || is.null(state)) unserialize(con) else unserialize_remote(node, con))
    if (!is.null(msg)) break
  }
  if (is.numeric(since)) spin_waited(since)
  done <- TRUE
  msg
}

# A remote worker's message; a failed read names the host, and why the built-in client's
# connection to it was lost (ServerAliveCountMax, say) if it was.
unserialize_remote <- function(node, con) {
  tryCatch(unserialize(con), error = function(e) {
    host <- .subset2(node, "host")
    why <- ssh_lost_reason(.subset2(attr(node, "process", exact = TRUE), "ssh"))
    stopf("Ssh", "Reading from the worker on host '%s' failed: %s%s", host, conditionMessage(e),
          if (nzchar(why)) sprintf(" (the SSH connection to it was lost: %s)", why) else "",
          fields = list(host = host))
  })
}

recv_healing <- function(node, state) {
  cur <- current_node(node)
  done <- FALSE
  on.exit(if (!done) note_abort())
  repeat {
    msg <- tryCatch(unserialize(.subset2(cur, "con")), error = function(e) e)
    if (inherits(msg, "error")) {
      cur <- recover_from_crash(node, cur, msg)
      next
    }
    msg <- accept_message(state, msg)
    if (is.null(msg)) next
    task_done(node, cur)
    done <- TRUE
    return(msg)
  }
}

# One result from whichever node has one (parallel's load-balanced calls). Until a worker
# is relaunched in place, a node's connection is its own: no look-up per node.
recvOneData.RichSOCKcluster <- function(cl) {
  done <- FALSE
  on.exit(if (!done) note_abort())
  # Polled for briefly first (R/spinWait.R) when the first node is local (one look-up a
  # call), and the workers leave the master a core: with as many workers as cores, they are
  # busy while it waits, and a spin only takes a core from one of them. (As in recvData(),
  # the Rust routine is called directly.)
  first <- node_state(.subset2(cl, 1L))
  local <- !is.null(first) && first$local && length(cl) < spin_cores()
  repeat {
    healed <- .package$relaunches > 0L
    curs <- if (healed) lapply(cl, current_node) else cl
    cons <- lapply(curs, .subset2, "con")
    ready <- if (local) spin_for_input(cons)
    if (!is.logical(ready)) {
      since <- ready
      ready <- socketSelect(cons)
      if (is.numeric(since)) spin_waited(since)
    }
    if (!any(ready)) next
    n <- which.max(ready)
    state <- node_state(.subset2(cl, n))
    healing <- !is.null(state) && state$healing
    if (healing) {
      msg <- tryCatch(unserialize(cons[[n]]), error = function(e) e)
      if (inherits(msg, "error")) {
        recover_from_crash(cl[[n]], curs[[n]], msg)
        next
      }
    } else {
      msg <- unserialize(cons[[n]])
    }
    msg <- .Call(wrap__rs_accept_message, if (!is.null(state)) state$numbers, msg)
    if (is.null(msg)) next
    if (healing) task_done(cl[[n]], curs[[n]])
    done <- TRUE
    return(list(node = n, value = msg))
  }
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# Our methods for parallel's transport generics, which parallel does not export: registered
# here at load (not in NAMESPACE, where a generic that is gone would fail the load) once
# their check passed (R/internals.R, "transport_methods"). Without them our nodes and
# clusters use parallel's own methods for SOCK0node, SOCKnode and SOCKcluster. Those of
# makeClusterSequential() are its only transport: registered whenever the generics are
# there (turning the internal off does not apply to them).
register_transport_methods <- function() {
  if (isTRUE(.subset2(.package$internals_ok, "transport_methods"))) {
    ns <- asNamespace("parallel")
    registerS3method("sendData", "sequential_node", sendData.sequential_node, envir = ns)
    registerS3method("recvData", "sequential_node", recvData.sequential_node, envir = ns)
    registerS3method("recvOneData", "sequential_cluster", recvOneData.sequential_cluster, envir = ns)
  }
  ok <- tryCatch(internal_ok("transport_methods"), error = function(e) {
    # A typo in R_PARALLELLY_INTERNALS_DISABLE must not stop the package from loading; the
    # calls that read the option later fail with the same message.
    warning(conditionMessage(e), call. = FALSE)
    .package$internals_ok[["transport_methods"]]
  })
  .package$used_at_load$transport_methods <- ok
  if (!ok) return(invisible(FALSE))
  ns <- asNamespace("parallel")
  registerS3method("sendData", "RichSOCKnode", sendData.RichSOCKnode, envir = ns)
  registerS3method("recvData", "RichSOCKnode", recvData.RichSOCKnode, envir = ns)
  registerS3method("recvOneData", "RichSOCKcluster", recvOneData.RichSOCKcluster, envir = ns)
  invisible(TRUE)
}

# The bulk calls that task_position() looks for.
register_parallel_methods <- function() {
  # Not exported by parallel (R/internals.R, "task_position"): a missing one is left out.
  ns <- asNamespace("parallel")
  bulk <- lapply(c("clusterCall", "staticClusterApply", "dynamicClusterApply"), get0, envir = ns, mode = "function", inherits = FALSE)
  .package$bulk_functions <- Filter(is.function, bulk)
}
