#' Get an internal function of the parallel package (internal)
#'
#' `future` fetches this at load time to reach internals of `parallel`.
#'
#' @param name The name of the object in the parallel namespace.
#' @return The object.
#' @keywords internal
importParallel <- function(name = NULL) {
  ns <- getNamespace("parallel")
  if (!is.character(name) || length(name) != 1L || is.na(name) || !exists(name, mode = "function", envir = ns, inherits = FALSE)) {
    stop_arg("name", "must name a function of the 'parallel' package: %s", deparse1(name))
  }
  get(name, mode = "function", envir = ns, inherits = FALSE)
}
