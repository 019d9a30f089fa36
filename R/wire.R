# The wire path of our local and forked workers: the master writes each task with one
# send() on the connection's descriptor, and reads each framed reply (R/workerLoop.R) with
# exactly one read of its length, in Rust (src/rust/src/wire.rs). R's own reads and writes
# on a socket wait in select() around each one; this path does not.
#
# The connection stays R's: node$con is what future's socketSelect() watches, and what R
# falls back to for everything the wire does not do. It never reads ahead of a frame, so
# R's connection buffer stays empty while a node uses the wire, and anything that is not a
# frame (a plain message, an ended connection) is left for R's unserialize() to read or
# report, as it always did.
#
# A node uses the wire when its descriptor can be told for sure (one socket of ours on the
# node's port whose far end is a socket of the worker's process, on this machine). It asks
# for frames until the first reply that is not one (a worker serving with base R's loop, or
# a plain message sent by task code): from then on R reads that node's messages, since R
# may have read ahead into its own buffer. R's reads still understand frames (a raw vector
# that unserialize()s to the message), so nothing is lost either way.

# The wire of a node: list(fd, inode) of the master's descriptor of its connection, or NULL
# (a remote worker, a self-healing node, or a descriptor that cannot be told for sure).
wire_socket <- function(node) {
  process <- attr(node, "process", exact = TRUE)
  if (!isTRUE(process$kind %in% c("local", "fork")) || !is.null(process$ssh)) return(NULL)
  port <- node_options(node)$port
  if (!is.numeric(port) || !is.numeric(process$pid)) return(NULL)
  tryCatch(backend_wire_find(process$pid, port), error = function(e) NULL)
}

# Wait slices: a wait returns to R this often, so that an interrupt is seen.
wire_slice_ms <- 200

# Write one message (serialized in Rust as serialize(data, NULL) would); R's own
# serialize() onto the connection where the wire cannot.
wire_send <- function(state, data, con) {
  left <- backend_wire_send(state$fd, state$inode, data, state$xdr, wire_slice_ms)
  if (identical(left, 0)) return(invisible(NULL))
  repeat {
    if (!is.double(left) || left < 0) {
      # A failed socket (R's own write reports it, as it always did), or a descriptor that
      # is no longer the connection's: R writes, from here on.
      wire_off(state)
      return(invisible(serialize(data, con, xdr = state$xdr, ascii = FALSE)))
    }
    if (left == 0) return(invisible(NULL))
    Sys.sleep(0)  # lets R notice an interrupt
    left <- backend_wire_send_more(state$fd, state$inode, wire_slice_ms)
  }
}

# Read one message: a frame through the wire, or R's unserialize() of whatever else is next.
wire_recv <- function(state, con) {
  got <- backend_wire_recv(state$fd, state$inode, wire_slice_ms)
  if (is.list(got)) return(got)
  deadline <- NULL
  repeat {
    if (is.list(got)) return(got)
    if (!is.null(got)) break
    # Nothing yet: the connection's timeout applies, as to R's own read.
    if (is.null(deadline)) deadline <- Sys.time() + state$timeout
    if (Sys.time() > deadline) {
      wire_off(state)
      stop(simpleError("error reading from connection", call = quote(unserialize(con))))
    }
    Sys.sleep(0)  # lets R notice an interrupt
    got <- backend_wire_recv(state$fd, state$inode, wire_slice_ms)
  }
  # A reply R could not unserialize in Rust: R's unserialize() says why.
  if (is.raw(got)) return(unserialize(got))
  # 1: the next message is not a frame; 2: the connection ended (R's read says so);
  # 3: the descriptor is no longer the connection's.
  if (got != 2L) wire_off(state)
  plain_recv(con)
}

# R's read of a message, frames included.
plain_recv <- function(con) {
  msg <- unserialize(con)
  if (is.raw(msg)) unserialize(msg) else msg
}

# From now on R reads and writes this node's messages.
wire_off <- function(state) {
  if (state$fd >= 0L) backend_wire_forget(state$fd, state$inode)
  state$fd <- -1L
}
