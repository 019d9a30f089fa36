# Self-healing clusters: with autoRestart = N a node found dead when the cluster next
# sends it work is relaunched (at most N times per node); with retries = M the task a
# worker held when it died is sent again to a relaunched worker (at most M times per task).
#
# Node objects are immutable (future identifies clusters by hashing them), so a relaunched
# worker is recorded in a registry: the original node's key maps to its newest incarnation,
# and the transport methods (R/nodeTraffic.R) talk to that incarnation.

# The worker currently standing in for `node`.
current_node <- function(node) {
  if (.package$relaunches == 0L) return(node)
  key <- node_key(node)
  if (is.null(key)) return(node)
  get0(key, envir = .package$incarnations, inherits = FALSE, ifnotfound = node)
}

# Whether self-healing is on for a node (asked for every message: kept cheap).
healing_on <- function(node) {
  options <- node_options(node)
  isTRUE(options$autoRestart > 0L) || isTRUE(options$retries > 0L)
}

healing_policy <- function(node) {
  options <- node_options(node)
  list(autoRestart = if (is.numeric(options$autoRestart)) options$autoRestart else 0L,
       retries = if (is.numeric(options$retries)) options$retries else 0L)
}

# Book-keeping per original node: relaunches so far and the task in flight.
lineage <- function(node) {
  key <- node_key(node)
  if (is.null(key)) return(NULL)
  l <- get0(key, envir = .package$lineages, inherits = FALSE)
  if (is.null(l)) {
    l <- new.env(parent = emptyenv())
    l$restarts <- 0L
    l$task <- NULL        # the EXEC message sent last, while its result is owed
    l$where <- NULL       # its position in the call, for error messages
    l$attempts <- 0L      # how many times that task was sent again
    l$causes <- character(0)
    assign(key, l, envir = .package$lineages)
  }
  l
}

host_key <- function(node) {
  id <- node_identity(node)
  if (isTRUE(id$local)) "localhost" else if (is.character(id$ssh)) id$ssh else id$host
}

# Relaunch the worker of `node` (whose current incarnation `cur` died) and record it.
relaunch <- function(node, cur, for_retry = FALSE) {
  policy <- healing_policy(node)
  l <- lineage(node)
  host <- host_key(cur)
  failures <- get0(host, envir = .package$host_failures, inherits = FALSE, ifnotfound = 0L)
  # With retries, relaunching is part of re-running tasks (bounded per task); without, the
  # autoRestart budget bounds it per node.
  if (!for_retry && policy$retries == 0L && l$restarts >= policy$autoRestart) {
    stopf("Launch", "The worker of node '%s' died and its autoRestart budget (%d) is used up; use repairCluster() to relaunch it.",
          node_identity(cur)$host, policy$autoRestart, fields = list(host = node_identity(cur)$host))
  }
  if (policy$autoRestart > 0L && failures >= policy$autoRestart) {
    stopf("Launch", "Workers on host '%s' died %d times in a row: not relaunching there again until repairCluster().",
          node_identity(cur)$host, failures, fields = list(host = node_identity(cur)$host))
  }
  old_con <- .subset2(cur, "con")
  try(close(old_con), silent = TRUE)
  new <- cloneNode(cur)
  retire_worker(cur, original = node)
  assign(node_key(node), new, envir = .package$incarnations)
  .package$relaunches <- .package$relaunches + 1L
  assign(host, failures + 1L, envir = .package$host_failures)
  l$restarts <- l$restarts + 1L
  new
}

# A replaced incarnation leaves nothing behind: a worker still running (its connection
# broke) is killed; a dead one's temporary directory, log and share of its host's
# connection go (after the new incarnation took its share, so the connection stays open).
retire_worker <- function(cur, original) {
  if (node_ended(cur)) return(invisible())
  id <- node_identity(cur)
  kind <- node_kind(id$kind)
  alive <- suppressWarnings(probe_nodes(list(cur), timeout = 5))
  if (isTRUE(alive)) {
    suppressWarnings(signal_nodes(list(cur), tools::SIGTERM, timeout = 5))
  } else if (identical(alive, FALSE)) {
    try(kind$after_kill(id), silent = TRUE)
  }
  id$killed <- TRUE
  try(run_stages(list(kind$stop(list(id), background = TRUE))), silent = TRUE)
  mark_node_ended(cur, "killed")
  # The original node's entries (its lineage, its incarnations) outlive its first worker.
  if (!identical(node_key(cur), node_key(original))) forget_node(cur)
  invisible()
}

# A worker answered: its host is healthy again.
host_ok <- function(node) {
  if (length(ls(.package$host_failures)) == 0L) return(invisible())
  host <- host_key(node)
  if (exists(host, envir = .package$host_failures, inherits = FALSE)) rm(list = host, envir = .package$host_failures)
}

# The cause of death of a worker whose connection just failed (waits briefly for it to end).
death_cause <- function(cur) {
  wait_until(function() !isTRUE(isNodeAlive(cur, timeout = 5)), timeout = 2, interval = 0.02)
  cause <- node_health(list(cur))$exit
  if (is.na(cause)) "connection lost" else cause
}

# Reading from `cur` failed with `err`: relaunch and send the task again if the budget
# allows; returns the new incarnation, or signals the error.
recover_from_crash <- function(node, cur, err) {
  policy <- healing_policy(node)
  l <- lineage(node)
  if (is.null(l) || (policy$retries == 0L && policy$autoRestart == 0L)) stop(err)
  cause <- death_cause(cur)
  l$causes <- c(l$causes, cause)
  if (!is.null(l$task) && l$attempts < policy$retries) {
    new <- relaunch(node, cur, for_retry = TRUE)
    l$attempts <- l$attempts + 1L
    serialize(l$task, new$con, xdr = node_xdr(new))  # same task number: its result is awaited
    return(new)
  }
  if (!is.null(l$task) && policy$retries > 0L) {
    where <- l$where
    causes <- l$causes
    l$task <- NULL
    l$attempts <- 0L
    l$causes <- character(0)
    # Leave the cluster usable: the next call gets a fresh worker.
    try(relaunch(node, cur, for_retry = TRUE), silent = TRUE)
    stopf("Crash", "Task %s crashed its worker %d times (on host '%s'); causes of death: %s. It was not sent again (retries = %d).",
          where, length(causes), node_identity(cur)$host, paste(unique(causes), collapse = "; "), policy$retries,
          fields = list(host = node_identity(cur)$host, task = where, causes = causes))
  }
  # No retries: the call fails as in base parallel; the node is relaunched on its next use.
  stop(err)
}

# Where a task sits in the call that sends it, for error messages (only with self-healing):
# a load-balanced call tags each task with its index; otherwise the nearest of parallel's
# bulk calls on the stack, found by identity wherever it is, knows the index.
task_position <- function(data) {
  tag <- data$data$tag
  if (!is.null(tag) && length(tag) == 1L && is.numeric(tag)) return(sprintf("#%d", as.integer(tag)))
  if (!internal_ok("task_position")) return("(unknown)")
  frame <- bulk_call_frame()
  if (is.null(frame)) return("(outside a parallel call)")
  i <- get0("i", envir = frame, inherits = FALSE)
  start <- get0("start", envir = frame, inherits = FALSE)
  if (is.numeric(i) && is.numeric(start)) return(sprintf("#%d", as.integer(start + i - 1L)))
  if (is.numeric(i)) return(sprintf("#%d", as.integer(i)))
  "(unknown)"
}

# The frame of the innermost of parallel's bulk calls (clusterCall(), staticClusterApply(),
# dynamicClusterApply()) that is running, or NULL.
bulk_call_frame <- function() {
  bulk <- .package$bulk_functions
  for (i in rev(seq_len(sys.nframe()))) {
    fun <- sys.function(i)
    for (b in bulk) if (identical(fun, b)) return(sys.frame(i))
  }
  NULL
}

# A node stands for its live worker: once self-healing has relaunched it in place, reading
# its fields (node$session_info, node$con, node$host, as future's post-mortems and
# socketSelect() do) gives the relaunched worker's, not the dead one's. The node object itself
# stays as it was (future identifies a cluster by its hash).
`$.RichSOCKnode` <- function(x, name) node_field(current_node(x), name, exact = FALSE)

`[[.RichSOCKnode` <- function(x, i, exact = TRUE) node_field(current_node(x), i, exact = exact)

# The worker's session information is kept for the node in this session (R/nodeOptions.R).
node_field <- function(node, name, exact) {
  value <- .subset2(node, name, exact = exact)
  if (is.null(value) && identical(name, "session_info")) value <- node_session_info(node)
  value
}
