# Who a node's worker is: (host, pid, start time). The PID comes from the launch (the Rust
# backend's child handle and the worker's own handshake), falling back to the session
# information that validate = TRUE collects; the start time makes a reused PID read as dead.

node_identity <- function(node) {
  process <- attr(node, "process", exact = TRUE)
  info <- node$session_info  # one lookup (it lives in this session's tables, R/nodeOptions.R)
  pid <- process$pid
  if (!is.numeric(pid) || length(pid) != 1L || is.na(pid)) pid <- info$process$pid
  if (!is.numeric(pid) || length(pid) != 1L || is.na(pid)) pid <- NA_integer_
  start_time <- process$start_time
  if (!is.numeric(start_time) || length(start_time) != 1L) start_time <- NA_real_
  local <- attr(node$host, "localhost", exact = TRUE)
  if (!is.logical(local) || length(local) != 1L || is.na(local)) {
    nodename <- info$system$nodename
    local <- is.character(nodename) && identical(nodename, Sys.info()[["nodename"]])
  }
  kind <- process$kind
  if (!is.character(kind) || length(kind) != 1L) kind <- adopting_kind(local)
  tmp <- info$tempdir
  list(pid = as.integer(pid), start_time = start_time, local = local, kind = kind,
       host = as.character(node$host), key = node_key(node), launcher_pid = process$launcher_pid,
       log = process$log, ssh = process$ssh, fork_server = process$fork_server,
       tempdir = if (is.character(tmp) && length(tmp) == 1L && nzchar(tmp)) tmp else NA_character_,
       process = process, node = node)
}

# A node's key in the package's tables, in one format: "WHERE/PID@STAMP". WHERE always names
# the host: "localhost", the SSH connection's key, or KIND:HOST for a worker started through
# a client process of ours (rsh, srun, qrsh); STAMP is the worker's start time in clock
# ticks, or "client<PID>" (its client's PID, unique while the worker runs) where the
# worker's start time cannot be read. Made once at launch (worker_key()), kept in the node.
format_node_key <- function(where, pid, stamp) sprintf("%s/%d@%s", where, as.integer(pid), stamp)
start_stamp <- function(start_time) sprintf("%.0f", as.numeric(start_time))

#' Check whether a process with a given PID exists (internal)
#'
#' @param pid A positive process ID.
#' @param debug Unused; kept for compatibility.
#' @return TRUE, FALSE, or NA if that cannot be determined. A zombie process is not alive.
#' @keywords internal
pid_exists <- function(pid, debug = FALSE) {
  if (!is.numeric(pid) || length(pid) != 1L || is.na(pid) || !is.finite(pid) || pid <= 0) {
    stop_arg("pid", "must be a single positive process ID: %s", deparse1(pid))
  }
  # A process that was just killed may still be exiting (its sockets already closed) for a
  # moment: a post-mortem that asks right away deserves the settled answer.
  for (i in 1:5) {
    alive <- backend_probe(as.integer(pid))
    if (!isTRUE(alive)) return(alive)
    Sys.sleep(0.03)
  }
  alive
}
