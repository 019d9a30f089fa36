#' Errors signalled by the parallelly package
#'
#' Every error the package signals is a condition of class `parallellyError`, and also of
#' one more specific class that says what went wrong. Code that handles failures can catch
#' exactly the errors it expects, with [tryCatch()] or [withCallingHandlers()], and read
#' the details from fields of the condition instead of parsing its message. The messages
#' are written for people and may change; the classes and fields are part of the API.
#'
#' @section Classes:
#' The class vector of a condition is, for example,
#' `c("parallellyTimeoutError", "parallellyError", "error", "condition")`.
#' \describe{
#'   \item{`parallellyArgumentError`}{An argument of an exported function has an invalid
#'     value, for example `workers = 0`. Field `argument` names the argument when known.}
#'   \item{`parallellyLaunchError`}{A worker could not be started: the R launcher
#'     (argument `rscript`) does not exist or cannot be run, or the worker process ended
#'     before it connected to the main R process. In the latter case, the fields say how it
#'     ended and what it wrote last.}
#'   \item{`parallellyConnectError`}{A remote host refused the connection or cannot be
#'     reached.}
#'   \item{`parallellyTimeoutError`}{A wait ran out of time: workers that were started but
#'     did not connect within `connectTimeout` (they are stopped), or a remote host that did
#'     not answer in time.}
#'   \item{`parallellyPortError`}{The main R process cannot listen on the port it should
#'     use, typically because another process uses it. Field `port`.}
#'   \item{`parallellyOptionError`}{An R option or environment variable has an invalid
#'     value (see [parallelly.options]).}
#'   \item{`parallellyInputError`}{Data read from outside R is malformed, such as a host
#'     file of a job scheduler, a port specification, or a core count of zero.}
#'   \item{`parallellySystemError`}{The operating system refused an operation, for example
#'     sending a signal.}
#'   \item{`parallellyDnsError`}{The name of a remote host does not resolve to an address.}
#'   \item{`parallellyHostKeyError`}{The key of a remote host cannot be trusted: it is not
#'     in known_hosts, or it differs from the recorded one.}
#'   \item{`parallellyAuthError`}{The remote host did not accept any of the keys offered
#'     (from ssh-agent or the identity files).}
#'   \item{`parallellySshError`}{Any other failure of the built-in SSH client, for example
#'     a failed handshake, an unreadable configuration file, or a lost connection.}
#'   \item{`parallellyAuthPromptError`}{(Also `parallellyAuthError`.) The host asks for a
#'     password, or other prompts, at login, which only OpenSSH's `ssh` can answer. Raised
#'     only when the built-in client was chosen explicitly (`rshcmd = "<ssh>"` or option
#'     `parallelly.ssh.client`); otherwise the host goes to `ssh`.}
#'   \item{`parallellyNoCommonAlgorithmError`}{(Also `parallellySshError`.) The handshake
#'     found no algorithm that both the host and the built-in client offer, while the ssh
#'     policy allows some that the built-in client lacks; the message names them. Raised only
#'     when the built-in client was chosen explicitly; otherwise the host goes to `ssh`.}
#' }
#'
#' Errors that mean a worker could not be set up (classes `parallellyLaunchError` and
#' `parallellyTimeoutError` raised while creating a cluster) also have class
#' `PSOCKConnectionError`, the class the original \pkg{parallelly} package uses for failed
#' worker connections. Code written for that package keeps working, and
#' [makeClusterPSOCK()] tries such a worker again when it is set up sequentially (argument
#' `tries`).
#'
#' The remote-host classes are described with their remedies in
#' `vignette("remote-clusters", package = "parallelly")`.
#'
#' @section Fields:
#' Besides `message` and `call`, a condition may carry:
#' \describe{
#'   \item{`argument`}{The name of the argument at fault.}
#'   \item{`host`}{The host of the worker or connection concerned.}
#'   \item{`pid`}{The process ID of the worker concerned (several when several workers
#'     failed to connect in time).}
#'   \item{`rank`}{The index of the worker in the cluster.}
#'   \item{`exit`}{How a worker process ended, e.g. `"exited with status 1"` or
#'     `"was killed by signal 9 (SIGKILL)"`.}
#'   \item{`output`}{The last lines the worker wrote to its output before it ended (a
#'     character vector, empty if it wrote nothing).}
#'   \item{`port`}{The port that could not be used.}
#' }
#' A field that does not apply is `NULL`.
#'
#' @examples
#' ## An invalid argument
#' e <- tryCatch(freePort(-1), parallellyArgumentError = function(e) e)
#' class(e)
#' conditionMessage(e)
#'
#' ## A worker that cannot be launched; no process is left behind
#' e <- tryCatch(
#'   makeClusterPSOCK(1, rscript = "no-such-Rscript"),
#'   parallellyLaunchError = function(e) e
#' )
#' class(e)
#' e$host
#'
#' ## A worker that ends before it connects: how it ended, and its last output
#' e <- tryCatch(
#'   makeClusterPSOCK(1, rscript_args = c("-e", "stop('boom')", "*")),
#'   parallellyError = function(e) e
#' )
#' e$exit
#' e$output
#'
#' @aliases parallellyArgumentError parallellyLaunchError parallellyConnectError
#' parallellyTimeoutError parallellyPortError parallellyOptionError parallellyInputError
#' parallellySystemError parallellyDnsError parallellyHostKeyError parallellyAuthError
#' parallellySshError parallellyAuthPromptError parallellyNoCommonAlgorithmError PSOCKConnectionError
#' @name parallellyError
#' @seealso [makeClusterPSOCK()], [conditions][base::conditions]
NULL
