#' parallelly: Enhancing the 'parallel' Package, with a Rust Backend
#'
#' This package provides the API of the `parallelly` package, version 2.0.0, while a Rust
#' library does the work on processes: starting R workers, checking whether they are alive,
#' signalling them, and connecting to remote hosts over SSH without an `ssh` program.
#'
#' @section Clusters and their workers:
#' [makeClusterPSOCK()] starts R workers on this machine or on remote hosts and returns a
#' cluster that every function of the \pkg{parallel} package accepts, and that the
#' \pkg{future} package can use. Each node knows its worker process by process ID and
#' start time, so that
#' * [isNodeAlive()] tells whether a worker still runs, also while it is busy;
#' * [killNode()] signals a worker, never another process that reuses its process ID;
#' * [cloneNode()] starts a fresh worker with the same settings, for example to replace one
#'   that died;
#' * `print()` and `summary()` show each node's host, process ID and connection, and which
#'   connections are broken.
#'
#' Results that a crashed call still owed are dropped, so they never reach a later call.
#' `vignette("managing-workers", package = "parallelly")` walks through these functions,
#' and `vignette("remote-clusters", package = "parallelly")` explains remote workers and
#' the built-in SSH client.
#'
#' @section Resources:
#' [availableCores()] and [availableWorkers()] say how many cores and which hosts the
#' current R process may use, taking containers, CPU affinity and job schedulers into
#' account. [freePort()], [availableConnections()] and [freeConnections()] report the
#' ports and R connections that workers need, and [supportsMulticore()] whether forked
#' processing may be used.
#'
#' @section Errors:
#' Errors raised by the package are conditions of class `parallellyError` with a more
#' specific class and fields such as the host and the process ID; see [parallellyError].
#'
#' @section Options:
#' Defaults can be set with R options and environment variables; see
#' [parallelly.options].
#'
#' @keywords internal
"_PACKAGE"
