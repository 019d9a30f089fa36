## R connections: how many may be open, and whether a connection object
## still refers to the connection it was created for.

## Cached probe result
connections_state <- new.env(parent = emptyenv())

## Maximum number of connections R allows (128 in a default build)
availableConnections <- function() {
  value <- getOption2("parallelly.availableConnections", NULL)
  if (!is.null(value)) {
    value <- suppressWarnings(as.numeric(value))
    if (length(value) != 1L || is.na(value) || value < 3) {
      stop_classed("Option", "Option 'parallelly.availableConnections' must be a single ",
           "number >= 3: ", hpaste(value))
    }
    return(value)
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

freeConnections <- function() {
  availableConnections() - length(getAllConnections())
}

## An id that tells connections with the same index apart: the address
## of the connection's internal object.  0-2 for the standard streams,
## NA if unknown, -1 if the object went through serialize().
connectionId <- function(con) {
  index <- as.integer(con)
  if (index %in% 0:2) return(index)
  id <- attr(con, "conn_id", exact = TRUE)
  if (is.null(id)) return(NA_integer_)
  raw_id <- paste(utils::capture.output(print(id)), collapse = "")
  hex <- gsub("(^<pointer: *|>$)", "", raw_id)
  if (hex %in% c("(nil)", "0x0", "0")) {
    value <- -1L
  } else {
    value <- hex_to_double(sub("^0x", "", hex))
  }
  structure(value, raw_id = raw_id)
}

## Pointers do not fit an R integer, so hex is converted to a double
hex_to_double <- function(hex) {
  digits <- match(strsplit(tolower(hex), "")[[1]], c(0:9, letters[1:6])) - 1
  if (length(digits) == 0L || anyNA(digits)) return(NA_real_)
  sum(digits * 16^rev(seq_along(digits) - 1))
}

isConnectionValid <- function(con) {
  if (!inherits(con, "connection")) {
    stop_classed("Argument", "Argument 'con' must be a connection: ", class(con)[1])
  }
  index <- as.integer(con)
  if (index %in% 0:2) return(TRUE)

  if (!index %in% getAllConnections()) {
    reason <- sprintf(
      "Connection (%s) is no longer valid. There is currently no registered R connection with that index %d among the known ones (%s)",
      connectionInfo(con), index, comma(getAllConnections()))
    return(structure(FALSE, reason = reason))
  }

  current <- getConnection(index)
  if (!identical(connectionId(con), connectionId(current))) {
    reason <- sprintf(
      "Connection (%s) is no longer valid. It differ from the currently registered R connection with the same index %d (%s)",
      connectionInfo(con), index, connectionInfo(current))
    return(structure(FALSE, reason = reason))
  }
  TRUE
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
          format(as.numeric(id), scientific = FALSE),
          dQuote(if (is.null(raw_id)) NA_character_ else raw_id, q = FALSE))
}

## Two connection objects are equal only if they are the same connection
all.equal.connection <- function(target, current, ...) {
  if (identical(target, current)) TRUE else "Connections differ"
}
