# Task traffic on our nodes: base R's PSOCK protocol, unchanged (one serialize() per message
# on node$con), plus bookkeeping that keeps stale results out of later calls.
#
# When a parallel call fails part-way (a worker died, or the user interrupted), the other
# workers still deliver the results of that call. parallel would hand them to the *next*
# call as if they were its own. Each node therefore counts the results it still owes
# (`pending`); when a new task is sent while results are owed, those results belong to an
# abandoned call and are read and dropped (`discard`) before the new task's result.

new_node_state <- function() {
  state <- new.env(parent = emptyenv())
  state$pending <- 0L
  state$discard <- 0L
  state
}

node_state <- function(node) {
  state <- attr(node, "state", exact = TRUE)
  if (is.environment(state)) state else NULL
}

node_xdr <- function(node) !inherits(node, "SOCK0node")

sendData.RichSOCKnode <- function(node, data) {
  state <- node_state(node)
  if (!is.null(state) && identical(data$type, "EXEC")) {
    state$discard <- state$discard + state$pending
    state$pending <- 0L
  }
  serialize(data, node$con, xdr = node_xdr(node))
  if (!is.null(state) && identical(data$type, "EXEC")) state$pending <- state$pending + 1L
  invisible(NULL)
}

# Read one message, dropping results owed to abandoned calls first.
recv_node_message <- function(node) {
  state <- node_state(node)
  repeat {
    msg <- unserialize(node$con)
    if (is.null(state)) return(msg)
    if (state$discard > 0L) {
      state$discard <- state$discard - 1L
      next
    }
    if (state$pending > 0L) state$pending <- state$pending - 1L
    return(msg)
  }
}

recvData.RichSOCKnode <- function(node) recv_node_message(node)

recvOneData.RichSOCKcluster <- function(cl) {
  cons <- lapply(cl, function(node) node$con)
  repeat {
    ready <- socketSelect(cons)
    if (!any(ready)) next
    n <- which.max(ready)
    state <- node_state(cl[[n]])
    msg <- unserialize(cons[[n]])
    if (!is.null(state)) {
      if (state$discard > 0L) {
        state$discard <- state$discard - 1L
        next
      }
      if (state$pending > 0L) state$pending <- state$pending - 1L
    }
    return(list(node = n, value = msg))
  }
}

# parallel's transport generics are internal to it: register our methods in its S3 table.
register_parallel_methods <- function() {
  ns <- asNamespace("parallel")
  registerS3method("sendData", "RichSOCKnode", sendData.RichSOCKnode, envir = ns)
  registerS3method("recvData", "RichSOCKnode", recvData.RichSOCKnode, envir = ns)
  registerS3method("recvOneData", "RichSOCKcluster", recvOneData.RichSOCKcluster, envir = ns)
}
