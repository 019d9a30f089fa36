## Whether forked processing ('multicore') can and may be used.

## multicore_state (R/state.R) remembers that the one-time RStudio warning has been given

#' Check whether forked processing may be used
#'
#' Forked processing ("multicore", as in [parallel::mclapply()]) creates workers by copying
#' the current R process. It is not available on MS Windows, and it is considered unstable
#' inside the RStudio Console. `supportsMulticore()` says whether it is both possible and
#' allowed in the current R session.
#'
#' The answer is `FALSE` when forking is not possible. Otherwise option
#' `parallelly.fork.enable`, when set to `TRUE` or `FALSE`, decides. Otherwise the answer is
#' `FALSE` in the RStudio Console (if `"rstudio_console"` is among
#' `parallelly.supportsMulticore.disableOn`, as by default) and `TRUE` elsewhere.
#'
#' @param warn If `TRUE` and forking is disabled because R runs in the RStudio Console, give
#' a warning once per R session that says so. Option
#' `parallelly.supportsMulticore.unstable` set to anything but `"warn"` (for example
#' `"quiet"`) silences it.
#' @param \dots Not used.
#'
#' @return A single `TRUE` or `FALSE`.
#'
#' @examples
#' supportsMulticore()
#'
#' ## Disable forked processing for the rest of the session
#' oopts <- options(parallelly.fork.enable = FALSE)
#' supportsMulticore()
#' options(oopts)
#'
#' @seealso [parallelly.options]
#' @export
supportsMulticore <- function(warn = FALSE, ...) {
  ## Forking needs parallel::mcparallel(), which Windows lacks
  if (!fork_is_possible()) return(FALSE)

  ## The user has the last word
  enable <- getOption2("parallelly.fork.enable", NA)
  enable <- suppressWarnings(as.logical(enable))
  if (length(enable) == 1L && !is.na(enable)) return(enable)

  disableOn <- getOption2("parallelly.supportsMulticore.disableOn",
                          c("rstudio_console", "rstudio_terminal"))
  ## Forking in the RStudio Console can crash the IDE.  Like upstream, the
  ## terminal is matched by the token "rstudio_term" only, so the default
  ## "rstudio_terminal" keeps forking enabled in RStudio's terminal.
  if (("rstudio_console" %in% disableOn && is_rstudio_console()) ||
      ("rstudio_term" %in% disableOn && is_rstudio_terminal())) {
    if (warn) warn_multicore_unstable()
    return(FALSE)
  }
  TRUE
}

fork_is_possible <- function() {
  .Platform$OS.type != "windows" &&
    exists("mcparallel", envir = asNamespace("parallel"), mode = "function",
           inherits = FALSE)
}

is_rstudio_console <- function() {
  Sys.getenv("RSTUDIO") == "1" && !nzchar(Sys.getenv("RSTUDIO_TERM"))
}

is_rstudio_terminal <- function() {
  Sys.getenv("RSTUDIO") == "1" && nzchar(Sys.getenv("RSTUDIO_TERM"))
}

warn_multicore_unstable <- function() {
  action <- getOption2("parallelly.supportsMulticore.unstable", "warn")
  if (!identical(action, "warn")) return(invisible(FALSE))
  if (isTRUE(multicore_state$warned)) return(invisible(FALSE))
  multicore_state$warned <- TRUE
  warning(paste(
    "[ONE-TIME WARNING] Forked processing ('multicore') is not supported",
    "when running R from RStudio because it is considered unstable.",
    "For more details, how to control forked processing or not, and how",
    "to silence this warning in future R sessions, see",
    "?parallelly::supportsMulticore"), call. = FALSE)
  invisible(TRUE)
}

## TRUE in a process forked by the 'parallel' package
#' Check whether the current R process is a forked child
#'
#' @return `TRUE` if this R process was created by forking, as the workers of
#' [parallel::mclapply()] are, otherwise `FALSE` (always `FALSE` when forked processing is
#' not supported, see [supportsMulticore()]).
#'
#' @examples
#' isForkedChild()
#'
#' if (supportsMulticore()) {
#'   parallel::mclapply(1:2, function(i) isForkedChild(), mc.cores = 2L)
#' }
#'
#' @export
isForkedChild <- function() {
  if (!supportsMulticore()) return(FALSE)
  if (internal_ok("is_child")) return(isTRUE(parallel_internal("isChild")()))
  # R/internals.R: without parallel's record, a process other than the one that loaded
  # this package is a fork of it.
  !identical(Sys.getpid(), .package$load_pid)
}
