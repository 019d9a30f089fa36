#' Locate an external SSH client (internal)
#'
#' Only needed for an explicit `rshcmd`: remote workers use the built-in SSH client by
#' default. Looks for `ssh` on the PATH (and PuTTY's `plink` on Windows).
#'
#' @param which The clients to look for, e.g. `"ssh"`; NULL for all known ones.
#' @param first If TRUE, return only the first client found.
#' @param must_work If TRUE, an error when none is found.
#' @return A named list of commands (character vectors) with attributes `type` and `version`.
#' @keywords internal
find_rshcmd <- function(which = NULL, first = FALSE, must_work = TRUE) {
  known <- c(ssh = "ssh", `putty-plink` = "plink")
  if (is.null(which)) which <- names(known)
  which <- sub("^<(.*)>$", "\\1", which)
  found <- list()
  for (type in intersect(which, names(known))) {
    path <- Sys.which(known[[type]])
    if (!nzchar(path)) next
    cmd <- if (type == "putty-plink") c(unname(path), "-ssh") else unname(path)
    version <- suppressWarnings(tryCatch(system2(path, "-V", stdout = TRUE, stderr = TRUE), error = function(e) ""))
    attr(cmd, "type") <- type
    attr(cmd, "version") <- paste(version, collapse = " ")
    found[[type]] <- cmd
    if (first) break
  }
  if (length(found) == 0L && must_work) {
    stopf("Launch", "Failed to locate a default SSH client (checked: %s). Please specify one via argument 'rshcmd', or leave it unset to use the built-in SSH client.",
          paste(sQuote(which, FALSE), collapse = ", "))
  }
  if (first && length(found) > 0L) return(found[[1L]])
  found
}
