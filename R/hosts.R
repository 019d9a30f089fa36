## Hostname helpers: is a worker name this machine, a FQDN, an IPv4 number?

## Known answers per hostname, so /etc/hosts is read once per worker name: localhost_cache
## (R/state.R)

## TRUE if 'worker' names the current machine.  'localhost', 127.0.0.1
## and the machine's own name always do; otherwise the worker must be an
## alias of 'hostname' on one line of the hosts file(s).
## is_localhost(NULL, NULL) empties the cache.
is_localhost <- function(worker, hostname = Sys.info()[["nodename"]],
                         pathnames = "/etc/hosts") {
  if (is.null(worker) && is.null(hostname)) {
    rm(list = ls(envir = localhost_cache, all.names = TRUE),
       envir = localhost_cache)
    return(invisible(NULL))
  }
  if (!is.character(worker) || length(worker) != 1L || is.na(worker)) {
    stop_arg("worker", "must be a single hostname: %s", deparse1(worker))
  }
  if (worker %in% c("localhost", "127.0.0.1", "::1")) return(TRUE)
  if (identical(worker, hostname)) return(TRUE)

  key <- paste(hostname, worker, sep = "\r")
  if (exists(key, envir = localhost_cache, inherits = FALSE)) {
    return(get(key, envir = localhost_cache, inherits = FALSE))
  }
  res <- is_host_alias(worker, hostname, pathnames)
  assign(key, res, envir = localhost_cache)
  res
}

## TRUE if 'worker' and 'hostname' appear on the same hosts-file line
is_host_alias <- function(worker, hostname, pathnames) {
  for (pathname in pathnames) {
    if (!file.exists(pathname)) next
    lines <- tryCatch(readLines(pathname, warn = FALSE),
                      error = function(ex) character(0L))
    lines <- trimws(sub("#.*", "", lines))
    lines <- lines[nzchar(lines)]
    for (line in lines) {
      names <- strsplit(line, split = "[[:space:]]+")[[1]][-1]
      if (hostname %in% names && worker %in% names) return(TRUE)
    }
  }
  FALSE
}

## A fully qualified domain name has at least one dot
is_fqdn <- function(worker) {
  grepl(".", worker, fixed = TRUE)
}

## Four dot-separated numbers in 0-255
is_ip_number <- function(worker) {
  worker <- as.character(worker)
  ok <- grepl("^[0-9]{1,3}([.][0-9]{1,3}){3}$", worker)
  ok[ok] <- vapply(strsplit(worker[ok], split = ".", fixed = TRUE),
                   FUN = function(parts) all(as.integer(parts) <= 255L),
                   FUN.VALUE = NA)
  ok
}
