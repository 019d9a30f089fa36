#' Cluster types for parallel::makeCluster()
#'
#' `RPSOCK`, `RMPI` and `SEQ` name this package's cluster types. R (>= 4.5.0) lets packages
#' register cluster types, and this package registers these three when it is loaded: there
#' `parallel::makeCluster(2, type = parallelly::RPSOCK)` calls [makeClusterPSOCK()],
#' `type = parallelly::RMPI` calls [makeClusterMPI()] and `type = parallelly::SEQ` calls
#' [makeClusterSequential()] (its one node runs in the current session; `spec` may be
#' missing or 1). With older R they are plain strings and nothing is registered.
#'
#' @examples
#' RPSOCK
#' if (getRversion() >= "4.5.0") {
#'   cl <- parallel::makeCluster(type = parallelly::SEQ)
#'   print(cl)
#'   parallel::stopCluster(cl)
#' }
#' @name clusterTypes
#' @aliases RPSOCK RMPI SEQ
#' @export RPSOCK RMPI SEQ
NULL

RPSOCK <- "parallelly::RPSOCK"
RMPI <- "parallelly::RMPI"
SEQ <- "parallelly::SEQ"

# parallel::registerClusterType() exists from R 4.5.0 on; with older R nothing is registered.
# It warns when a type is registered again (the package loaded a second time in a session).
register_cluster_types <- function() {
  register <- get0("registerClusterType", envir = asNamespace("parallel"), mode = "function")
  if (is.null(register)) return(invisible(FALSE))
  types <- list(
    RPSOCK = function(spec, ...) makeClusterPSOCK(spec, ...),
    RMPI = function(spec, ...) makeClusterMPI(spec, ...),
    SEQ = make_sequential_cluster_type
  )
  for (name in names(types)) {
    type <- get(name)
    try(suppressWarnings(register(type, types[[name]], make.default = FALSE)), silent = TRUE)
  }
  invisible(TRUE)
}

# makeCluster(type = SEQ) passes its `spec` along: one node is all a sequential cluster has.
make_sequential_cluster_type <- function(spec = 1L, ...) {
  if (!missing(spec) && !identical(as.numeric(spec), 1)) {
    stop_arg("spec", "of a 'parallelly::SEQ' cluster must be 1 (it has one node, this R session): %s", deparse1(spec))
  }
  if (...length() > 0L) {
    stop_arg("...", "is not used by a 'parallelly::SEQ' cluster: %s", paste(names(list(...)), collapse = ", "))
  }
  makeClusterSequential()
}
