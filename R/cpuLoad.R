## Load average and the cores it leaves idle.

## c("1min", "5min", "15min") from /proc/loadavg; NA where not available
#' Get the average load of the machine
#'
#' Reads the system load averages, the average number of processes that were running or
#' waiting for a CPU over the last 1, 5 and 15 minutes, from `/proc/loadavg` (Linux).
#'
#' @return A named numeric vector with elements `1min`, `5min` and `15min`; all `NA` where
#' `/proc/loadavg` does not exist.
#'
#' @examples
#' cpuLoad()
#'
#' @seealso [freeCores()]
#' @export
cpuLoad <- function() {
  load <- rep(NA_real_, times = 3L)
  line <- read_lines_or_empty("/proc/loadavg")
  if (length(line) > 0L) {
    values <- suppressWarnings(as.numeric(strsplit(trimws(line[1]), "[[:space:]]+")[[1]][1:3]))
    if (length(values) == 3L) load <- values
  }
  names(load) <- c("1min", "5min", "15min")
  load
}

# Callable as `Rscript -e parallelly::cpuLoad` (R/commandLine.R).
cpuLoad <- structure(cpuLoad, class = c("cli_fcn", "function"), cli_args = list())

## Cores not taken by the current load, at least one
#' Get the number of CPU cores that are idle
#'
#' Estimates how many of the machine's cores are not used, by subtracting a load average
#' ([cpuLoad()]) from the number of cores (methods `"system"` and `"fallback"` of
#' [availableCores()]), and keeping a fraction of what is left.
#'
#' @param memory Which load average to use: over the last `"5min"`, `"15min"` or `"1min"`.
#' @param fraction The fraction, in (0, 1], of the idle cores to count.
#' @param logical Passed on to [availableCores()].
#' @param default The value returned when the load average is not available.
#'
#' @return A positive integer, at least one, with attributes `loadavg`, `maxCores`, `memory`
#' and `fraction` that record how it was computed. On a single-core machine, `1L`; when the
#' load is unknown, `default`.
#'
#' @examples
#' freeCores()
#'
#' @seealso [availableCores()], [cpuLoad()]
#' @export
freeCores <- function(memory = c("5min", "15min", "1min"), fraction = 0.90,
                      logical = getOption2("parallelly.availableCores.logical", TRUE),
                      default = availableCores()) {
  memory <- match.arg(memory)
  if (length(fraction) != 1L || !is.numeric(fraction) || is.na(fraction) ||
      fraction <= 0 || fraction > 1) {
    stop_arg("fraction", "must be a single number in (0, 1]: %s", hpaste(fraction))
  }
  ncores <- availableCores(methods = c("system", "fallback"), logical = logical)
  if (ncores == 1L) return(1L)
  loadavg <- cpuLoad()
  if (is.na(loadavg[[memory]])) return(default)
  free <- max(1L, as.integer(floor(fraction * (ncores - loadavg[[memory]]))))
  structure(free, loadavg = loadavg, maxCores = ncores, memory = memory,
            fraction = fraction)
}
