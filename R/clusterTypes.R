#' Cluster types for parallel::makeCluster()
#'
#' `RPSOCK` and `RMPI` name this package's cluster types. R (>= 4.5.0) lets packages register
#' cluster types, and there `parallel::makeCluster(2, type = parallelly::RPSOCK)` calls
#' [makeClusterPSOCK()]; with older R they are plain strings.
#'
#' @examples
#' RPSOCK
#' @name clusterTypes
#' @aliases RPSOCK RMPI
#' @export RPSOCK RMPI
NULL

RPSOCK <- "parallelly::RPSOCK"
RMPI <- "parallelly::RMPI"

register_cluster_types <- function() {
  register <- get0("registerClusterType", envir = asNamespace("parallel"), mode = "function")
  if (is.null(register)) return(invisible(FALSE))
  try(register(RPSOCK, function(spec, ...) makeClusterPSOCK(spec, ...), make.default = FALSE), silent = TRUE)
  try(register(RMPI, function(spec, ...) makeClusterMPI(spec, ...), make.default = FALSE), silent = TRUE)
  invisible(TRUE)
}
