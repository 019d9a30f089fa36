#' Create a message-passing-interface (MPI) cluster of R workers
#'
#' Requires the Rmpi package; the cluster gets class `RichMPIcluster`.
#'
#' @param workers The number of workers.
#' @param \dots Passed to [parallel::makeCluster()].
#' @param autoStop If TRUE, the cluster is stopped when it is garbage collected.
#' @param verbose Print debug output.
#' @return A `RichMPIcluster`.
#' @examples
#' \dontrun{
#' cl <- makeClusterMPI(2)  # needs the Rmpi package and an MPI installation
#' parallel::stopCluster(cl)
#' }
#' @export
makeClusterMPI <- function(workers, ..., autoStop = FALSE, verbose = isTRUE(getOption2("parallelly.debug", FALSE))) {
  if (!is.numeric(workers) || length(workers) != 1L || is.na(workers) || workers < 1) {
    stop_arg("workers", "must be an integer: %s", deparse1(workers))
  }
  if (!requireNamespace("Rmpi", quietly = TRUE)) {
    stopf("Launch", "makeClusterMPI() requires the 'Rmpi' package, which is not installed. Install Rmpi, or use makeClusterPSOCK().")
  }
  cl <- parallel::makeCluster(workers, type = "MPI", ...)
  class(cl) <- c("RichMPIcluster", setdiff(class(cl), "spawnedMPIcluster"))
  if (autoStop) cl <- autoStopCluster(cl)
  cl
}

#' @export
stopCluster.RichMPIcluster <- function(cl = NULL) {
  NextMethod()
  if (requireNamespace("Rmpi", quietly = TRUE)) {
    free <- get0("mpi.comm.free", envir = asNamespace("Rmpi"), mode = "function")
    if (!is.null(free)) free(1)
  }
  invisible(NULL)
}
