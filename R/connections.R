## R connections: how many may be open, and whether a connection object
## still refers to the connection it was created for.

## The cached probe result is in connections_state (R/state.R)

## Maximum number of connections R allows (128 in a default build)
#' Get the number of R connections that may be open, and how many are free
#'
#' R can hold only a limited number of connections open at once (128 in a default build,
#' three of which are the standard streams). Each PSOCK worker uses one connection in the
#' main R process, so this limit also limits the number of workers.
#' `availableConnections()` finds the limit by opening connections until R refuses (the
#' answer is remembered for the rest of the session); `freeConnections()` subtracts the
#' connections that are open now.
#'
#' @return `availableConnections()` returns a single number: the maximum number of open
#' connections, or `+Inf` if no limit was reached (option
#' `parallelly.availableConnections.tries` says how many are tried, 16384 by default).
#' Option `parallelly.availableConnections` overrides the probe. `freeConnections()` returns
#' the number of connections that can still be opened.
#'
#' @examples
#' availableConnections()
#' freeConnections()
#'
#' @seealso [showConnections()]; [availableCores()] with
#' `constraints = "connections"`.
#' @export
availableConnections <- function() {
  value <- getOption2("parallelly.availableConnections", NULL)
  if (!is.null(value)) {
    value <- suppressWarnings(as.numeric(value))
    if (length(value) != 1L || is.na(value) || value < 3) {
      stopf("Option", "Option 'parallelly.availableConnections' must be a single number >= 3: %s", hpaste(value))
    }
    return(value)
  }
  # Before R 4.4.0 the limit is fixed at build time (128): no need to probe.
  if (is.null(connections_state$max) && getRversion() < "4.4.0" && is.null(getOption("parallelly.availableConnections.tries"))) {
    connections_state$max <- 128
  }
  if (is.null(connections_state$max)) {
    connections_state$max <- probe_max_connections()
  }
  connections_state$max
}

## Open connections until R refuses; all of them are closed again
probe_max_connections <- function() {
  tries <- getOption2("parallelly.availableConnections.tries", 16384L)
  cons <- list()
  on.exit(for (con in cons) close(con))
  for (kk in seq_len(tries)) {
    con <- tryCatch(rawConnection(raw(0L), open = "r"),
                    error = function(ex) NULL)
    if (is.null(con)) return(length(getAllConnections()))
    cons[[kk]] <- con
  }
  Inf
}

#' @rdname availableConnections
#' @export
freeConnections <- function() {
  availableConnections() - length(getAllConnections())
}

## An id that tells connections with the same index apart: the address
## of the connection's internal object.  0-2 for the standard streams,
## NA if unknown, -1 if the object went through serialize().
#' @rdname isConnectionValid
#' @export
connectionId <- function(con) {
  index <- as.integer(con)
  if (index %in% 0:2) return(index)
  id <- attr(con, "conn_id", exact = TRUE)
  if (is.null(id)) return(NA_integer_)
  # deparse() gives the same "<pointer: 0x...>" text as print(), at a fraction of the cost.
  raw_id <- paste(deparse(id), collapse = "")
  hex <- gsub("(^<pointer: *|>$)", "", raw_id)
  # R numbers its connections with a counter that it stores in the pointer, so the value
  # is a small integer (NA if it ever grew past what an R integer holds).
  value <- if (hex %in% c("(nil)", "0x0", "0")) -1L else strtoi(sub("^0x", "", hex), base = 16L)
  structure(value, raw_id = raw_id)
}

#' Check whether a connection object still refers to its connection
#'
#' An R connection object holds only the index of the connection. Once the connection is
#' closed, R may give the same index to a new connection, and the old object then silently
#' refers to the new one. This happens, for instance, to a cluster node whose connection was
#' closed, or to a connection that went through [serialize()].
#' `isConnectionValid()` detects both cases; `connectionId()` returns the identifier that
#' tells two connections with the same index apart.
#'
#' @param con A connection.
#' @param target,current Two connections, compared by `all.equal()`.
#' @param \dots Not used.
#'
#' @return `isConnectionValid()` returns `TRUE`, or `FALSE` with an attribute `reason` that
#' explains why. The standard streams (indices 0 to 2) are always valid.
#'
#' `connectionId()` returns an integer that identifies the connection (R's own number for
#' it, kept in its internal pointer), with the text it was read from in attribute `raw_id`.
#' It is the index itself for the standard streams, `-1` for a connection that was
#' serialized, and `NA` when nothing identifies the connection.
#'
#' `all.equal()` for connections returns `TRUE` only if both objects are the same
#' connection, otherwise `"Connections differ"`.
#'
#' @examples
#' f <- tempfile()
#' con <- file(f, open = "w")
#' connectionId(con)
#' isConnectionValid(con)
#'
#' close(con)
#' ## Once closed, the object no longer refers to a registered connection
#' isConnectionValid(con)
#'
#' ## A new connection may get the same index, but it is a different connection
#' con2 <- file(f, open = "w")
#' as.integer(con2) == as.integer(con)
#' isConnectionValid(con)
#' close(con2)
#' unlink(f)
#'
#' @export
isConnectionValid <- function(con) {
  if (!inherits(con, "connection")) {
    stop_arg("con", "must be a connection: %s", class(con)[1])
  }
  if (connection_is_current(con)) return(TRUE)
  # Why not.
  index <- as.integer(con)
  if (!index %in% getAllConnections()) {
    reason <- sprintf(
      "Connection (%s) is no longer valid. There is currently no registered R connection with that index %d among the known ones (%s)",
      connectionInfo(con), index, comma(getAllConnections()))
    return(structure(FALSE, reason = reason))
  }

  reason <- sprintf(
    "Connection (%s) is no longer valid. It differ from the currently registered R connection with the same index %d (%s)",
    connectionInfo(con), index, connectionInfo(getConnection(index)))
  structure(FALSE, reason = reason)
}

# isConnectionValid()'s answer without the reason it gives for FALSE (which describes the
# connection, ~0.5 ms). identical() compares the external pointers by address: the same
# test as comparing connectionId()s, without formatting either.
connection_is_current <- function(con) {
  index <- as.integer(con)
  index %in% 0:2 || (index %in% getAllConnections() &&
                       identical(attr(con, "conn_id", exact = TRUE), attr(getConnection(index), "conn_id", exact = TRUE)))
}

## One-line description for messages; an invalid connection cannot be
## summarised, so its details are then left out
connectionInfo <- function(con) {
  index <- as.integer(con)
  id <- connectionId(con)
  details <- tryCatch({
    if (!identical(connectionId(getConnection(index)), id)) stop("stale")
    s <- summary(con)
    sprintf(", description=%s, class=%s, mode=%s, text=%s, opened=%s, can read=%s, can write=%s",
            dQuote(s$description, q = FALSE), dQuote(s$class, q = FALSE),
            dQuote(s$mode, q = FALSE), dQuote(s$text, q = FALSE),
            dQuote(s$opened, q = FALSE), dQuote(s[["can read"]], q = FALSE),
            dQuote(s[["can write"]], q = FALSE))
  }, error = function(ex) "")
  raw_id <- attr(id, "raw_id", exact = TRUE)
  sprintf("connection: index=%d%s, id=%s, raw_id=%s", index, details,
          format(as.vector(id)),
          dQuote(if (is.null(raw_id)) NA_character_ else raw_id, q = FALSE))
}

## Two connection objects are equal only if they are the same connection
#' @rdname isConnectionValid
#' @export
all.equal.connection <- function(target, current, ...) {
  if (identical(target, current)) TRUE else "Connections differ"
}
