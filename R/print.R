# summary() and print() of nodes and clusters, in the reference package's formats. A node
# whose connection was closed reports "ERROR: invalid connection", also when R has since
# reused the connection's index for another connection (checked with isConnectionValid()),
# and says which of the two it is.
# print() makes no network round trip (a stopped or unreachable host must not hold it up):
# it shows what is known -- local workers are checked with a system call, remote ones are
# reported dead only once summary() found them so. summary() asks the hosts (within its
# timeout) and keeps what it found about dead remote workers for print().

#' Summaries of cluster nodes
#'
#' @param object,x A `RichSOCKnode` or `RichSOCKcluster`.
#' @param \dots Not used.
#' @return `summary()` returns a data frame with one row per node and the reference
#' package's columns `host`, `r_version`, `platform`, `pwd`, `pid`, `connection_index` and
#' `connection`, followed by `alive` (TRUE/FALSE/NA), `exit` (why the worker died: NA
#' while it is alive), `rss` (bytes), `cpu` (seconds), `uptime` (seconds) and `restarts`
#' (how many times the node was relaunched) and `client`: for a remote worker, the SSH
#' client that reaches its host (`"built-in"`, or `"ssh"` for OpenSSH's client, which a host
#' is handed to when the built-in client cannot honour its setup: see `makeNodePSOCK()`;
#' with `options(parallelly.debug = TRUE)` setup says why), `NA` for local workers.
#' Resource use is reported for local workers.
#' A node whose connection is no longer valid shows `ERROR: invalid connection; existing
#' connection #N` in column `connection` when R has given its index `N` to another
#' connection since, and `...; non-existing connection #N` otherwise (the reference package
#' does not notice the first case).
#' `print()` of a dead node ends with its cause of death. `print()` never contacts a
#' remote host: a remote worker is reported dead once `summary()` (or `isNodeAlive()` via
#' `summary()`) found it so; `summary()` asks the hosts, each within a few seconds.
#' @examples
#' cl <- makeClusterPSOCK(2)
#' print(cl)
#' print(cl[[1]])
#' summary(cl)[, c("host", "pid", "alive", "rss", "cpu")]
#' parallel::stopCluster(cl)
#' @export
summary.RichSOCKnode <- function(object, ...) {
  summary(as_rich_cluster(list(object)))
}

#' @rdname summary.RichSOCKnode
#' @export
summary.RichSOCKcluster <- function(object, ...) {
  res <- cluster_summary_rows(object)
  nodes <- lapply(unclass(object), function(node) if (!is.null(node)) current_node(node))
  health <- node_health(nodes)
  remember_remote_deaths(nodes, health)
  cbind(res, health, client = vapply(nodes, node_client, character(1)), stringsAsFactors = FALSE)
}

# Which client reaches a remote node's host: "built-in" (our SSH client), "ssh" (OpenSSH's,
# chosen or handed the host because the built-in one could not honour its setup), or the
# launcher given as `rshcmd`; NA for local workers.
node_client <- function(node) {
  opts <- if (is.null(node)) NULL else node_options(node)
  if (is.null(opts) || isTRUE(attr(opts$worker, "localhost"))) return(NA_character_)
  if (is.character(opts$client)) return(opts$client)
  if (!is.null(opts$ssh)) return("built-in")
  rshcmd <- opts$rshcmd
  if (is.function(rshcmd)) return("rshcmd function")
  if (is.character(rshcmd) && length(rshcmd) > 0L) return(sub("^<(.*)>$", "\\1", basename(rshcmd[1L])))
  NA_character_
}

# What summary() found out about dead remote workers, for print(): cause and last output.
known_deaths <- function() .package$known_deaths

remember_remote_deaths <- function(nodes, health) {
  for (i in which(health$alive %in% FALSE)) {
    node <- nodes[[i]]
    key <- node_key(node)
    if (is.null(key) || answers_locally(node)) next
    if (exists(key, envir = known_deaths(), inherits = FALSE)) next
    assign(key, list(exit = health$exit[i], output = node_last_output(node)), envir = known_deaths())
  }
}

# Whether a node is known to be dead, without a network round trip: list(exit, output), or
# NULL when it is alive or nothing is known.
known_death <- function(node) {
  node <- current_node(node)
  if (answers_locally(node)) {
    health <- node_health(list(node))
    if (!is_false_like(health$alive)) return(NULL)
    return(list(exit = health$exit, output = node_last_output(node)))
  }
  key <- node_key(node)
  if (is.null(key)) return(NULL)
  get0(key, envir = known_deaths(), inherits = FALSE)
}

# What the node's kind adds about it (a Slurm step, say), or NA; known locally.
node_description <- function(node) {
  id <- node_identity(node)
  describe <- node_kind(id$kind)$describe
  if (!is.function(describe)) return(NA_character_)
  note <- tryCatch(describe(id), error = function(e) NA_character_)
  if (is.character(note) && length(note) == 1L) note else NA_character_
}

# Whether a node's worker can be checked with a system call (print() may do that).
answers_locally <- function(node) {
  id <- node_identity(node)
  isTRUE(node_kind(id$kind)$answers_locally(id))
}

# The reference's columns of summary(): what the nodes told at setup, and their connections.
cluster_summary_rows <- function(object) {
  rows <- lapply(seq_along(object), function(i) {
    node <- object[[i]]
    if (is.null(node)) na_node_summary() else node_summary(current_node(node))
  })
  res <- do.call(rbind, rows)
  rownames(res) <- NULL
  if (length(object) == 1L && !is.null(object[[1L]])) attr(res$host, "localhost") <- attr(object[[1L]]$host, "localhost")
  res
}

node_summary <- function(node) {
  info <- node$session_info
  id <- node_identity(node)
  value_or_na <- function(x, na = NA_character_) if (is.null(x) || length(x) != 1L) na else x
  con <- node$con
  data.frame(
    host = if (is.null(node$host)) NA_character_ else node$host,
    r_version = value_or_na(info$r$version.string),
    platform = value_or_na(info$r$platform),
    pwd = value_or_na(info$pwd),
    pid = id$pid,
    connection_index = if (inherits(con, "connection")) as.integer(con) else NA_integer_,
    connection = connection_description(con),
    stringsAsFactors = FALSE
  )
}

na_node_summary <- function() {
  data.frame(host = NA_character_, r_version = NA_character_, platform = NA_character_,
             pwd = NA_character_, pid = NA_integer_, connection_index = NA_integer_,
             connection = NA_character_, stringsAsFactors = FALSE)
}

# An invalid connection is described as the reference does: "ERROR: invalid connection;
# existing connection #4" when R has given its index to another connection since,
# "...; non-existing connection #4" when no connection has that index now.
connection_description <- function(con) {
  if (!inherits(con, "connection")) return(NA_character_)
  tryCatch({
    if (!isTRUE(isConnectionValid(con))) stop("invalid connection", call. = FALSE)
    summary(con)$description
  }, error = function(e) {
    index <- as.integer(con)
    sprintf("ERROR: %s; %s connection #%d", conditionMessage(e),
            if (index %in% getAllConnections()) "existing" else "non-existing", index)
  })
}

#' @rdname summary.RichSOCKnode
#' @export
print.RichSOCKnode <- function(x, ...) {
  s <- node_summary(current_node(x))
  where <- if (isTRUE(attr(x$host, "localhost"))) "local" else "remote"
  death <- ""
  known <- known_death(x)
  if (!is.null(known)) {
    death <- sprintf(". The worker is no longer running: %s", known$exit)
    output <- known$output
    if (length(output) > 0L) death <- sprintf("%s. Its last output was:\n   %s", death, paste(output, collapse = "\n   "))
  }
  note <- node_description(current_node(x))
  if (!is.na(note)) note <- sprintf(" (%s)", note) else note <- ""
  cat(sprintf("%s of a socket cluster on %s host '%s' with pid %s (%s, %s) using socket connection #%s ('%s')%s%s\n",
              class(x)[1L], where, s$host, s$pid, s$r_version, s$platform, s$connection_index, s$connection, note, death))
  invisible(x)
}

#' @rdname summary.RichSOCKnode
#' @export
print.RichSOCKcluster <- function(x, ...) {
  s <- cluster_summary_rows(x)
  n <- length(x)
  spec <- ifelse(is.na(s$r_version), "(R version and platform not queried)",
                 sprintf("(%s, platform %s)", s$r_version, s$platform))
  txt <- sprintf("host %s %s", sQuote(s$host), spec)
  counts <- sort(table(txt), decreasing = TRUE)
  nodes_word <- function(k) if (k == 1L) "1 node" else sprintf("%d nodes", k)
  msg <- if (length(counts) == 1L) {
    sprintf("Socket cluster with %s on %s", nodes_word(n), names(counts))
  } else {
    parts <- sprintf("%s %s on %s", vapply(counts, nodes_word, ""),
                     ifelse(counts == 1L, "is", "are"), names(counts))
    sprintf("Socket cluster with %s where %s", nodes_word(n), paste(parts, collapse = ", "))
  }
  broken <- which(grepl("ERROR:", s$connection, fixed = TRUE))
  if (length(broken) > 0L) {
    reasons <- paste(unique(s$connection[broken]), collapse = "; ")
    ids <- paste0("#", broken, collapse = ", ")
    msg <- if (length(broken) == 1L) {
      sprintf("%s. 1 node (%s) has a broken connection (%s)", msg, ids, reasons)
    } else {
      sprintf("%s. %d nodes (%s) have broken connections (%s)", msg, length(broken), ids, reasons)
    }
  }
  if (!is.null(attr(x, "gcMe"))) {
    msg <- paste0(msg, ". This cluster is registered to be automatically stopped by the garbage collector")
  }
  cat(msg, "\n", sep = "")
  invisible(x)
}
