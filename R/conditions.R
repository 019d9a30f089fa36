# Classed conditions. Every error this package raises inherits from "parallellyError", with a
# specific class beneath it, so that callers can catch what they expect:
#
#   parallellyArgumentError   bad input to an exported function (names the argument)
#   parallellyLaunchError     a worker could not be started, or exited before connecting
#   parallellyTimeoutError    a wait ran out of time (a worker that never connected, a host
#                             that did not answer)
#   parallellyConnectError    a TCP connection to a host was refused or failed
#   parallellyDnsError        a host name does not resolve
#   parallellyHostKeyError    a host key is unknown or has changed
#   parallellyAuthError       SSH authentication was refused
#   parallellySshError        the SSH connection failed or was lost
#   parallellySystemError     the operating system refused an operation
#   parallellyCrashError      a task crashed its worker more often than `retries` allows
# Setup failures also carry "PSOCKConnectionError", the class the reference package uses.
#   parallellyPortError       the master cannot listen on the requested port
#   parallellyOptionError     an option or environment variable has an invalid value
#   parallellyInputError      a file or specification read from outside is malformed
#
# Extra fields (host, pid, status, output, ...) travel with the condition.

parallellyCondition <- function(message, class = NULL, call = NULL, ..., type = "error") {
  classes <- c(
    if (length(class) > 0L) paste0("parallelly", class, "Error"),
    "parallellyError", type, "condition"
  )
  structure(list(message = as.character(message), call = call, ...), class = classes)
}

# Signal a parallellyError of the given specific class.
stopf <- function(class, fmt, ..., call = NULL, extra_class = NULL, fields = list()) {
  msg <- if (...length() > 0L) sprintf(fmt, ...) else fmt
  cond <- do.call(parallellyCondition, c(list(msg, class = class, call = call), fields))
  if (length(extra_class) > 0L) class(cond) <- c(extra_class, class(cond))
  stop(cond)
}

# An error about an argument: names the argument and says what was wrong.
stop_arg <- function(arg, fmt, ...) {
  stopf("Argument", paste0("Argument '%s' ", fmt), arg, ..., fields = list(argument = arg))
}
