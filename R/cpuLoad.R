## Load average and the cores it leaves idle.

## c("1min", "5min", "15min") from /proc/loadavg; NA where not available
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

## Cores not taken by the current load, at least one
freeCores <- function(memory = c("5min", "15min", "1min"), fraction = 0.90,
                      logical = getOption2("parallelly.availableCores.logical", TRUE),
                      default = availableCores()) {
  memory <- match.arg(memory)
  if (length(fraction) != 1L || !is.numeric(fraction) || is.na(fraction) ||
      fraction <= 0 || fraction > 1) {
    stop_classed("Argument", "Argument 'fraction' must be a single number in (0, 1]: ",
         hpaste(fraction))
  }
  ncores <- availableCores(methods = c("system", "fallback"), logical = logical)
  if (ncores == 1L) return(1L)
  loadavg <- cpuLoad()
  if (is.na(loadavg[[memory]])) return(default)
  free <- max(1L, as.integer(floor(fraction * (ncores - loadavg[[memory]]))))
  structure(free, loadavg = loadavg, maxCores = ncores, memory = memory,
            fraction = fraction)
}
