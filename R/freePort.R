## freePort(): find a TCP port that can be bound on this machine.

#' Find a TCP port that can be listened on
#'
#' `freePort()` tries the candidate ports, in random order by default, and returns the first
#' one on which a server socket can be opened on this machine right now. The main R process
#' of a PSOCK cluster listens on such a port for its workers to connect.
#'
#' The random order is drawn without changing the random-number state of the R session:
#' `.Random.seed` is the same before and after the call.
#'
#' @param ports The candidate ports: integers in 0..65535, or `"random"` (the ports in
#' environment variable `R_PARALLELLY_RANDOM_PORTS`, by default 11000 to 11999), or `"auto"`
#' (environment variable `R_PARALLEL_PORT`, as used by the \pkg{parallel} package, and
#' `"random"` if it is unset; an invalid value gives a warning and random ports).
#' `R_PARALLELLY_RANDOM_PORTS` is a comma-separated list of ports and ranges, for example
#' `"20000:20999,30000"`.
#' @param default The value returned when no candidate port can be used: `"random"` (a
#' random candidate), `"first"` (the first candidate), a port number, or `NA`.
#' @param randomize If `TRUE`, the candidates are tried in random order, otherwise in the
#' given order.
#'
#' @return A single integer port number; `NA` if `ports` is empty (or if `default = NA` and
#' no port is free).
#'
#' @examples
#' freePort()
#' freePort(11000:11999)
#'
#' ## The first free port of two, in the order given
#' freePort(c(12345L, 12346L), randomize = FALSE)
#'
#' @seealso [makeClusterPSOCK()], whose argument `port` is resolved by `freePort()`.
#' @export
freePort <- function(ports = 1024:65535, default = "random", randomize = TRUE) {
  ports <- resolve_port_spec(ports)
  if (length(ports) == 0L) return(NA_integer_)
  if (randomize && length(ports) > 1L) ports <- stealth_sample(ports)

  any_port <- identical(Sys.getenv("_R_PARALLELLY_CHECK_AVAILABLE_PORTS_"), "any")
  for (port in ports) {
    if (any_port || isTRUE(backend_port_is_free(port))) return(port)
  }

  port <- default_port(default, ports)
  mdebugf("freePort(): none of %d ports could be bound; returning default %s",
          length(ports), port,
          debug = nzchar(Sys.getenv("R_PARALLELLY_DEBUG", "")) ||
                  debug_enabled())
  port
}

## "auto", "random" or integers -> an integer vector of candidate ports
resolve_port_spec <- function(ports) {
  if (is.character(ports)) {
    ports <- match.arg(ports, choices = c("auto", "random"))
    if (ports == "auto") ports <- auto_port()
    if (identical(ports, "random")) ports <- random_ports()
  }
  if (!is.numeric(ports) || anyNA(ports) || any(ports < 0 | ports > 65535) ||
      any(ports != round(ports))) {
    stop_arg("ports", "must be integers in [0, 65535] or \"auto\" or \"random\": %s", hpaste(ports))
  }
  as.integer(ports)
}

## R_PARALLEL_PORT (as used by 'parallel'), else "random"
auto_port <- function() {
  value <- Sys.getenv("R_PARALLEL_PORT", "")
  if (!nzchar(value)) return("random")
  port <- suppressWarnings(as.integer(value))
  if (is.na(port) || port < 0L || port > 65535L) {
    warning(sprintf(
      "Non-valid value for environment variable R_PARALLEL_PORT: %s. Using a random port instead.",
      sQuote(value, q = FALSE)), call. = FALSE)
    return("random")
  }
  port
}

## R_PARALLELLY_RANDOM_PORTS, e.g. "11000:11999,20000,30000:30009"
random_ports <- function() {
  value <- Sys.getenv("R_PARALLELLY_RANDOM_PORTS", "11000:11999")
  parse_port_specs(value, name = "R_PARALLELLY_RANDOM_PORTS")
}

parse_port_specs <- function(value, name = "ports") {
  specs <- trimws(strsplit(value, split = ",", fixed = TRUE)[[1]])
  specs <- specs[nzchar(specs)]
  ports <- lapply(specs, FUN = function(spec) {
    bounds <- suppressWarnings(as.integer(strsplit(spec, ":", fixed = TRUE)[[1]]))
    ok <- length(bounds) %in% 1:2 && !anyNA(bounds) &&
          all(bounds >= 0L & bounds <= 65535L) && bounds[1] <= bounds[length(bounds)] &&
          grepl("^[0-9]+(:[0-9]+)?$", spec)
    if (!ok) {
      stopf("Input", "Invalid port specification %s in %s: expected 'N' or 'A:B' with integers in [0, 65535]", sQuote(spec, q = FALSE), name)
    }
    seq(bounds[1], bounds[length(bounds)])
  })
  ports <- unique(unlist(ports, use.names = FALSE))
  if (length(ports) == 0L) {
    stopf("Input", "No ports specified in %s: %s", name, sQuote(value, q = FALSE))
  }
  as.integer(ports)
}

default_port <- function(default, ports) {
  if (identical(default, "random")) return(stealth_sample(ports, size = 1L))
  if (identical(default, "first")) return(ports[1])
  port <- suppressWarnings(as.integer(default))
  if (length(port) != 1L || (is.na(port) && !isNA(default))) {
    stop_arg("default", "must be \"random\", \"first\", an integer port, or NA: %s", hpaste(default))
  }
  port
}

## sample() without touching the user's RNG state: picking a port must
## not change the random numbers the user's code gets afterwards
stealth_sample <- function(x, size = length(x)) {
  genv <- globalenv()
  old_seed <- genv[[".Random.seed"]]
  on.exit({
    if (is.null(old_seed)) {
      if (exists(".Random.seed", envir = genv, inherits = FALSE)) {
        rm(list = ".Random.seed", envir = genv, inherits = FALSE)
      }
    } else {
      assign(".Random.seed", old_seed, envir = genv, inherits = FALSE)
    }
  })
  ## Seed from the clock and process id so that two calls, or two R
  ## processes, do not pick the same sequence
  now <- as.numeric(Sys.time())
  seed <- ((now %% 1e4) * 1e5 + Sys.getpid()) %% .Machine$integer.max
  set.seed(as.integer(seed))
  if (length(x) == 1L) return(rep(x, times = size))
  x[sample.int(length(x), size = size)]
}

# Callable as `Rscript -e parallelly::freePort --ports=20000:20999` (R/commandLine.R).
freePort <- structure(freePort, class = c("cli_fcn", "function"), cli_args = list(
  ports = "expr", default = "port", randomize = "logical"))
