# A node's launch options (the resolved makeNodePSOCK() specification with the original
# arguments: ~4 KB) live in a table of this session, not in the node: future serializes and
# hashes the cluster for every future, and a task that captures the cluster carries it.
# So a node serializes to a few hundred bytes, as base R's do, and cloneNode(), print(),
# summary() and self-healing find the options here.
#
# The table is keyed by the node's key (host, PID, start time). An entry lives as long as
# the node's connection object, whichever copy of the node holds it: it is removed when R
# collects that connection (a finalizer on its `conn_id` pointer, which R itself uses to
# close connections nobody holds), not when the node stops, because cloneNode() of a
# stopped or dead node needs them. A node made elsewhere (or one whose options were kept in
# it, as before) is read from its "options" attribute.

node_options <- function(node) {
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  if (is.character(key)) {
    options <- .subset2(node_options_table(), key)
    if (!is.null(options)) return(options)
  }
  attr(node, "options", exact = TRUE)
}

`node_options<-` <- function(node, value) {
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  ptr <- attr(.subset2(node, "con"), "conn_id", exact = TRUE)
  if (!is.character(key) || typeof(ptr) != "externalptr") {
    attr(node, "options") <- value  # no identity or no connection to tie the entry to
    return(node)
  }
  table <- node_options_table()
  known <- exists(key, envir = table, inherits = FALSE)
  assign(key, value, envir = table)
  if (!known) reg.finalizer(ptr, forget_options_finalizer(key, table))
  attr(node, "options") <- NULL
  node
}

node_options_table <- function() {
  table <- .package$node_options
  if (is.null(table)) table <- .package$node_options <- new.env(parent = emptyenv())
  table
}

# The finalizer's environment holds the key and the table only (not the node, whose
# connection would then never be collected).
forget_options_finalizer <- function(key, table) {
  f <- function(ptr) if (exists(key, envir = table, inherits = FALSE)) rm(list = key, envir = table)
  environment(f) <- list2env(list(key = key, table = table), parent = baseenv())
  f
}
