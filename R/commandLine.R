# Calling availableCores(), availableWorkers(), cpuLoad() and freePort() from a shell:
#
#   Rscript -e parallelly::availableCores --omit=1
#
# R prints the value of the `-e` expression, the function itself; these functions carry
# class "cli_fcn", whose print() method then calls the function with the arguments that
# follow on the command line and prints its value, as the reference package (>= 1.46.0)
# does. Unlike the reference, this happens only when the printed function is exactly what
# an `-e` expression names (`parallelly::availableCores`): print() in a script, or in any
# other non-interactive use, shows the function as always.

#' Call parallelly functions from the command line
#'
#' `availableCores()`, `availableWorkers()`, `cpuLoad()` and `freePort()` can be called from
#' a shell, with their arguments given as `--name=value`:
#'
#' ```sh
#' Rscript -e parallelly::availableCores
#' Rscript -e parallelly::availableCores --omit=1
#' Rscript -e parallelly::availableCores --fraction=0.5 --max=8
#' Rscript -e parallelly::availableCores --which=all
#' Rscript -e parallelly::availableWorkers
#' Rscript -e parallelly::cpuLoad
#' Rscript -e parallelly::freePort --ports=20000:20999
#' ```
#'
#' A value without names is written on one line, its elements separated by spaces (e.g. the
#' workers of `availableWorkers()`); a named value as a table with the names as column
#' headers (e.g. `availableCores()`, whose name says which method decided). `--methods` and
#' `--constraints` take comma-separated lists, `--ports` an R expression such as
#' `11000:11999`; a logical argument given as `--name` alone is `TRUE`. An argument the
#' function does not have is an error, and `Rscript` then exits with status 1.
#'
#' Only the exact form `Rscript -e parallelly::<function>` (or `parallelly:::`) calls the
#' function; printing these functions anywhere else shows them as usual (the reference
#' package calls them whenever R is not interactive).
#'
#' @name parallelly-command-line
#' @aliases parallelly-command-line
#' @seealso [availableCores()], [availableWorkers()], [cpuLoad()], [freePort()]
NULL

#' @export
print.cli_fcn <- function(x, ...) {
  name <- cli_call_name(x)
  if (is.null(name)) return(print(plain_function(x), ...))
  args <- parse_cli_args(commandArgs(trailingOnly = TRUE), attr(x, "cli_args", exact = TRUE), name)
  res <- withVisible(do.call(plain_function(x), args))
  if (res$visible) write_cli_value(res$value)
  invisible(x)
}

plain_function <- function(x) {
  attr(x, "cli_args") <- NULL
  class(x) <- NULL
  x
}

# The function's name when this print() is the value of an `Rscript -e parallelly::<name>`
# expression naming this very function; NULL otherwise.
cli_call_name <- function(x) {
  if (interactive()) return(NULL)
  args <- commandArgs(trailingOnly = FALSE)
  end <- match("--args", args, nomatch = length(args) + 1L)
  args <- args[seq_len(end - 1L)]
  exprs <- args[which(args[-length(args)] == "-e") + 1L]
  m <- regmatches(exprs, regexec("^[[:space:]]*parallelly:::?([[:alnum:]._]+)[[:space:]]*$", exprs))
  for (hit in m) {
    if (length(hit) != 2L) next
    fcn <- get0(hit[2], envir = asNamespace("parallelly"), inherits = FALSE)
    if (identical(fcn, x)) return(hit[2])
  }
  NULL
}

# "--name=value" arguments, converted by the type the function declares for each name.
parse_cli_args <- function(cmdargs, types, fname) {
  args <- list()
  unknown <- character(0)
  for (arg in cmdargs) {
    m <- regmatches(arg, regexec("^--([[:alnum:]._]+)(=(.*))?$", arg))[[1]]
    if (length(m) == 0L || !m[2] %in% names(types)) {
      unknown <- c(unknown, arg)
      next
    }
    name <- m[2]
    has_value <- nzchar(m[3])
    if (!has_value && types[[name]] != "logical") {
      stopf("Argument", "Command-line argument --%s of parallelly::%s needs a value: --%s=<value>", name, fname, name)
    }
    args[[name]] <- if (has_value) cli_value(m[4], types[[name]], name, fname) else TRUE
  }
  if (length(unknown) > 0L) {
    stopf("Argument", "Unknown parallelly command-line arguments for %s(): %s (it takes %s)",
          fname, paste(unknown, collapse = " "), paste0("--", names(types), "=", collapse = ", "))
  }
  args
}

cli_value <- function(value, type, name, fname) {
  out <- switch(type,
    character = value,
    port = if (grepl("^[0-9]+$", value)) as.integer(value) else value,
    list = trimws(strsplit(value, ",", fixed = TRUE)[[1]]),
    integer = if (grepl("^[+-]?[0-9]+$", value)) as.integer(value) else NA_integer_,
    numeric = suppressWarnings(as.numeric(value)),
    logical = as.logical(value),
    expr = tryCatch(eval(parse(text = value, keep.source = FALSE)[[1]], baseenv()), error = function(e) NULL)
  )
  if (is.null(out) || (anyNA(out) && value != "NA")) {
    stopf("Argument", "Command-line argument --%s=%s of parallelly::%s is not a valid %s",
          name, value, fname, if (type == "expr") "R expression" else type)
  }
  out
}

# As the reference writes them: a table for named values, one line otherwise.
write_cli_value <- function(value) {
  if (is.list(value)) {
    print(value)
  } else if (is.null(names(value))) {
    cat(paste(value, collapse = " "), "\n", sep = "")
  } else {
    print(as.data.frame(as.list(value), check.names = FALSE), row.names = FALSE)
  }
}
