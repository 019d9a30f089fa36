## Run a fresh Rscript with this session's library paths (so it loads the parallelly under
## test) and extra environment variables; returns its standard output, with attribute
## `status`. Standard error is kept apart (attribute `stderr`).
rscript_output <- function(args, env = character(0), timeout = 60) {
  rscript <- file.path(R.home("bin"), "Rscript")
  err <- tempfile()
  on.exit(unlink(err), add = TRUE)
  env <- c(R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep), env)
  out <- suppressWarnings(system2(rscript, shQuote(args), stdout = TRUE, stderr = err,
                                  env = paste0(names(env), "=", shQuote(env)), timeout = timeout))
  status <- attr(out, "status") %||% 0L
  structure(as.character(out), status = status, stderr = readLines(err, warn = FALSE))
}

if (!exists("%||%")) `%||%` <- function(x, y) if (is.null(x)) y else x
