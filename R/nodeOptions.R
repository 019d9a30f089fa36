# A node's launch options (the resolved makeNodePSOCK() specification with the original
# arguments: ~4 KB) and its worker's session information (~2 KB) live in tables of this
# session, not in the node: future serializes and hashes the cluster for every future, and
# a task that captures the cluster carries it. So a node serializes to a few hundred bytes,
# as base R's do, and cloneNode(), print(), summary() and self-healing find them here.
#
# The tables are keyed by the node's key (host, PID, start time). An entry lives as long as
# the node's connection object, whichever copy of the node holds it: it is removed when R
# collects that connection (a finalizer on its `conn_id` pointer, which R itself uses to
# close connections nobody holds), not when the node stops, because cloneNode() of a
# stopped or dead node needs them. A node made elsewhere (or one that kept them in itself,
# as before) is read from its "options" attribute and its `session_info` element.

node_options <- function(node) {
  node_entry(node, "options") %||% attr(node, "options", exact = TRUE)
}

`node_options<-` <- function(node, value) {
  if (!set_node_entry(node, "options", value)) {
    attr(node, "options") <- value  # no identity or no connection to tie the entry to
    return(node)
  }
  attr(node, "options") <- NULL
  node
}

node_session_info <- function(node) {
  node_entry(node, "session_info") %||% .subset2(node, "session_info")
}

`node_session_info<-` <- function(node, value) {
  if (!set_node_entry(node, "session_info", value)) {
    node[["session_info"]] <- value
    return(node)
  }
  if (!is.null(.subset2(node, "session_info"))) node[["session_info"]] <- NULL
  node
}

node_entry <- function(node, what) {
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  if (!is.character(key)) return(NULL)
  .subset2(node_table(what), key)
}

# Store `value` for `node`; FALSE if the node has no key or no connection to tie it to.
set_node_entry <- function(node, what, value) {
  key <- .subset2(attr(node, "process", exact = TRUE), "key")
  ptr <- attr(.subset2(node, "con"), "conn_id", exact = TRUE)
  if (!is.character(key) || typeof(ptr) != "externalptr") return(FALSE)
  assign(key, value, envir = node_table(what))
  tied <- node_table("tied")
  if (!exists(key, envir = tied, inherits = FALSE)) {
    assign(key, TRUE, envir = tied)
    reg.finalizer(ptr, forget_entries_finalizer(key, .package$node_tables))
  }
  TRUE
}

node_table <- function(what) {
  tables <- .package$node_tables
  table <- tables[[what]]
  if (is.null(table)) table <- tables[[what]] <- new.env(parent = emptyenv())
  table
}

# The finalizer's environment holds the key and the tables only (not the node, whose
# connection would then never be collected).
forget_entries_finalizer <- function(key, tables) {
  f <- function(ptr) {
    for (table in as.list(tables)) if (exists(key, envir = table, inherits = FALSE)) rm(list = key, envir = table)
  }
  environment(f) <- list2env(list(key = key, tables = tables), parent = baseenv())
  f
}

# names() and str() of a node show the reference's fields, `session_info` included, though
# that is kept here and not in the node (`$` and `[[` find it, R/selfHealing.R).
#' @export
names.RichSOCKnode <- function(x) {
  nms <- names(unclass(x))
  if (!"session_info" %in% nms && !is.null(node_session_info(current_node(x)))) nms <- c(nms, "session_info")
  nms
}

# str.default() itself, not through NextMethod(): called from a method it leaves out the
# "List of" header and the class line (R >= 4.5 checks for NextMethod), which the
# reference's nodes, having no str() method, show.
#' @export
str.RichSOCKnode <- function(object, ...) {
  if (is.null(.subset2(object, "session_info"))) {
    info <- node_session_info(current_node(object))
    if (!is.null(info)) object[["session_info"]] <- info  # `[[<-` of a list: no method
  }
  utils::getS3method("str", "default")(object, ...)
}
