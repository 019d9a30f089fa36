## Whether forked processing ('multicore') can and may be used.

## Remembers that the one-time RStudio warning has been given
multicore_state <- new.env(parent = emptyenv())

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
isForkedChild <- function() {
  if (!supportsMulticore()) return(FALSE)
  isChild <- get("isChild", envir = asNamespace("parallel"), mode = "function")
  isTRUE(isChild())
}
