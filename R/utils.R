## Small internal helpers shared by the package.

## Paste with abbreviation: "1, 2, 3, ..., 10".  Long vectors end up in
## error and debug messages, so we show the head and tail only.
hpaste <- function(..., sep = "", collapse = ", ", lastCollapse = NULL,
                   maxHead = if (missing(lastCollapse)) 3 else Inf,
                   maxTail = if (is.finite(maxHead)) 1 else Inf,
                   abbreviate = "...") {
  force(maxHead)  # its default looks at missing(lastCollapse)
  force(maxTail)
  if (is.null(lastCollapse)) lastCollapse <- collapse
  x <- paste(..., sep = sep)
  if (is.null(collapse)) return(x)
  n <- length(x)
  if (n == 0L) return(paste(x, collapse = collapse))
  if (is.finite(maxHead) && n > maxHead + maxTail + 1) {
    x <- c(utils::head(x, n = maxHead), abbreviate, utils::tail(x, n = maxTail))
    n <- length(x)
  }
  if (n == 1L) return(x)
  paste(paste(x[-n], collapse = collapse), x[n], sep = lastCollapse)
}

## Comma-separated listing, optionally quoted
comma <- function(x, sep = ", ") paste(x, collapse = sep)
commaq <- function(x, sep = ", ") paste(sprintf("'%s'", x), collapse = sep)

## Whether debug output is on: option 'parallelly.debug', or, when that is unset,
## 'future.debug' (so that options(future.debug = TRUE) shows ours too).
debug_enabled <- function() {
  isTRUE(getOption2("parallelly.debug", FALSE))
}

## Debug output goes through message() so that it can be captured or
## muffled; the timestamp helps to see where time is spent.
## mdebug() pastes its arguments; mdebugf() formats them (sprintf()).
mdebug <- function(..., debug = debug_enabled()) {
  if (!debug) return(invisible(FALSE))
  stamp <- format(Sys.time(), "[%H:%M:%OS3] ")
  message(stamp, ...)
  invisible(TRUE)
}

mdebugf <- function(fmtstr, ..., appendLF = TRUE, debug = debug_enabled()) {
  if (!debug) return(invisible(FALSE))
  stamp <- format(Sys.time(), "[%H:%M:%OS3] ")
  message(stamp, sprintf(fmtstr, ...), appendLF = appendLF)
  invisible(TRUE)
}

## Like base::isFALSE() but also accepts length-one values that coerce to
## FALSE, e.g. "FALSE" from an environment variable.
is_false_like <- function(x) {
  if (length(x) != 1L) return(FALSE)
  x <- suppressWarnings(as.logical(unclass(x)))
  identical(x, FALSE)
}

## stopifnot() whose error names the failing expression without the call; a classed
## condition (parallellyAssertionError) like every other error of ours.
stop_if_not <- function(...) {
  res <- list(...)
  for (kk in seq_along(res)) {
    ok <- res[[kk]]
    if (!is.logical(ok) || anyNA(ok) || !all(ok)) {
      expr <- deparse(match.call()[[kk + 1L]], width.cutoff = 60L)[1]
      stopf("Assertion", "%s is not TRUE", expr)
    }
  }
  invisible(TRUE)
}

## TRUE only for a single missing value
isNA <- function(x) {
  length(x) == 1L && is.na(x)
}

## sh_quote() that also supports type = "none" (no quoting), which is needed
## when the command is passed on without a shell.  NULL means sh (this
## package runs on Linux only).
sh_quote <- function(s, type = NULL) {
  if (length(s) == 0L) return(s)
  if (is.null(type)) {
    type <- "sh"  # Linux only
  }
  if (identical(type, "none")) return(s)
  base::shQuote(s, type = type)
}

## Read a single environment variable, NA when unset or empty
envvar_or_na <- function(name) {
  value <- Sys.getenv(name, "")
  if (!nzchar(value)) NA_character_ else value
}
