# R internals behind one door.
#
# Some speed and safety comes from parts of R that are not its API for packages: a C variable
# found with dlsym(), the descriptor of R's listening socket, functions and frames of the
# parallel package that it does not export, and what a worker's loop does with a task. They
# may change with any R version. Each use is listed here, once, with
#   - what it relies on and where (`what`),
#   - what it is used for (`use`),
#   - what the package does instead when it cannot be used (`fallback`), and
#   - a check that exercises it on the running R (`check`: TRUE, or an error saying why not).
# A check runs once a session, when the package loads for those marked `at_load` (they decide
# what is registered) and otherwise the first time code asks for it: a process that never
# uses an internal (a worker, most of the time) never pays its check (the two socket checks
# take ~10-50 ms). Code that uses one of these
# asks internal_ok(name) first and takes the fallback when the check failed or the user
# turned it off with option `parallelly.internals.disable` (env var
# R_PARALLELLY_INTERNALS_DISABLE), which is also how tests drive each fallback.
# r_internals() reports all of it (running the checks that have not run yet); with option
# parallelly.debug a failed check is reported when it runs.
#
# Not listed, because R itself checks them: the R entry points the Rust library links
# (R loads it with dyn.load(now = TRUE), so a missing one fails library(parallelly) with R's
# message instead of later; tests/testthat/test-internals.R checks that they are all R's API:
# none in tools:::nonAPI, all in tools:::funAPI() where R has it), and the exported
# functions of parallel (registerClusterType() is looked up, as it exists from R 4.5 on). Nor future's conventions, which the suite checks
# with future itself (a fork server hides its `master` node from future's search of the
# call stack, R/forkServerProcess.R).

r_internals_list <- function() list(
  R_TempDir = list(
    what = "C variable R_TempDir (R's session temporary directory; Rembedded.h, not the API for packages), found with dlsym() and reset in each forked worker so that tempdir(check = TRUE) makes the worker its own (src/rust/src/fork.rs, R/forkServerProcess.R)",
    use = "setup_strategy = \"fork\": forked workers with a temporary directory of their own",
    fallback = "no fork server: the workers are launched as with setup_strategy = \"parallel\"",
    check = check_r_temp_dir
  ),
  listen_socket = list(
    what = "the descriptor of the socket R's serverSocket() listens on, found in /proc and replaced with dup2() by one bound to 127.0.0.1 (src/rust/src/loopback.rs)",
    use = "the master's port accepts connections from this machine only when every worker connects from it",
    fallback = "the port listens on all interfaces, as with base R and the reference (workers still need their one-time token)",
    check = check_listen_socket
  ),
  work_loop = list(
    what = "the messages of parallel:::workLoop(), which our worker loop speaks in its place (R/workerLoop.R, R/workerCommand.R)",
    use = "local and forked workers serve tasks with our leaner loop",
    fallback = "base R's loop (parallel:::workLoop()), as remote workers use",
    check = check_work_loop
  ),
  direct_start = list(
    what = "R's front ends, Rscript and the shell script R_HOME/bin/R: the environment the script sets up (R_HOME, R_SHARE_DIR, R_INCLUDE_DIR, R_DOC_DIR, R's library directory on LD_LIBRARY_PATH), which this session has, and the arguments they give the binary R_HOME/bin/exec/R (R/directLaunch.R)",
    use = "local workers of this R start its binary directly: no Rscript, shell, uname and sed processes for each worker (~20 ms)",
    fallback = "workers start through Rscript, as base R starts them",
    check = check_direct_start
  ),
  wire_names = list(
    what = "a task whose function is base's eval() or lapply() (clusterEvalQ(), parLapply()) carries the name instead; the worker's do.call() in its loop finds base's function by that name (R/nodeTraffic.R)",
    use = "smaller task messages (no byte code of eval/lapply on the wire)",
    fallback = "the function itself travels, as base R and the reference send it",
    check = check_wire_names
  ),
  task_position = list(
    what = "the local variables `i` and `start` of parallel's clusterCall(), staticClusterApply() and dynamicClusterApply(), read from their frames (R/selfHealing.R)",
    use = "the error of a task that crashed its worker says which task (\"#3\")",
    fallback = "the error says \"(unknown)\" for the task's position",
    check = check_task_position
  ),
  transport_methods = list(
    what = "S3 methods of ours for parallel's unexported generics sendData(), recvData() and recvOneData(), through which parallel sends tasks and reads results (R/nodeTraffic.R; makeClusterSequential()'s, R/makeClusterSequential.R, are registered whenever the generics are there: they are its only transport)",
    use = "stale results of abandoned calls are dropped, self-healing (autoRestart, retries), the brief poll of local workers before a blocking read",
    fallback = "parallel's own methods for SOCKnode and SOCKcluster, as the reference uses (turning it off takes effect at the next load: set the environment variable)",
    check = check_transport_methods,
    at_load = TRUE
  ),
  is_child = list(
    what = "parallel:::isChild(), parallel's record of being one of its forked children (R/supportsMulticore.R)",
    use = "isForkedChild()",
    fallback = "isForkedChild() compares the process with the one the package was loaded in (a fork made after loading is a child)",
    check = check_is_child
  )
)

# Run the checks `names` (default: all of them, again) and record their results; at load,
# those marked `at_load`. A check must not fail the load.
check_r_internals <- function(names = NULL) {
  checks <- r_internals_list()
  if (is.null(names)) names <- names(checks)
  .package$wire_answers_cache <- NULL
  on.exit(.package$wire_answers_cache <- NULL)
  for (name in names) {
    t0 <- proc.time()[["elapsed"]]
    # Warnings (a refused connection's) say why a check failed: kept for `why`, not shown.
    warned <- character()
    ok <- withCallingHandlers(tryCatch(checks[[name]]$check(), error = function(e) e), warning = function(w) {
      warned <<- c(warned, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
    why <- if (isTRUE(ok)) "" else if (inherits(ok, "error")) conditionMessage(ok) else "the check did not hold"
    if (!isTRUE(ok) && length(warned) > 0L) why <- sprintf("%s (%s)", why, paste(unique(warned), collapse = "; "))
    .package$internals[[name]] <- list(ok = isTRUE(ok), why = why, seconds = proc.time()[["elapsed"]] - t0)
    .package$internals_ok[[name]] <- isTRUE(ok)
    if (!isTRUE(ok)) {
      mdebugf("R internal '%s' failed its check on this R (%s): %s; instead, %s",
              name, R.version.string, why, checks[[name]]$fallback)
    }
  }
  invisible(unlist(.package$internals_ok[names]))
}

# At load: the checks that decide what the package registers.
check_r_internals_at_load <- function() {
  checks <- r_internals_list()
  .package$internals_known <- names(checks)
  .package$internals <- list()
  .package$internals_ok <- list()
  check_r_internals(names(checks)[vapply(checks, function(x) isTRUE(x$at_load), logical(1))])
}

# Whether `name` may be used: its check passed (run now if it has not run yet this session)
# and the user has not turned it off. Kept short: it runs for every task that calls eval or
# lapply.
internal_ok <- function(name) {
  ok <- .subset2(.package$internals_ok, name)
  if (is.null(ok)) ok <- check_r_internals(name)[[1L]]
  if (is.null(getOption("parallelly.internals.disable"))) ok else ok && !internal_disabled(name)
}

internal_disabled <- function(name) {
  off <- getOption("parallelly.internals.disable", NULL)
  if (is.null(off)) return(FALSE)
  known <- .package$internals_known
  if (!is.character(off) || anyNA(off) || !all(off %in% c("all", known))) {
    stopf("Option", "Option 'parallelly.internals.disable' must name R internals to turn off (%s, or \"all\"), not %s; see ?parallelly.options",
          paste(sprintf("\"%s\"", known), collapse = ", "), deparse1(off))
  }
  any(off == "all" | off == name)
}

#' The R internals this package uses, and whether it uses them here (internal)
#'
#' Lists every use of an R internal (a part of R or of its `parallel` package that is not an
#' API for packages), whether its check passed when the package was loaded on this R, whether
#' option `parallelly.internals.disable` turns it off, and what is done instead when it is
#' not used.
#'
#' @return A data frame with one row per internal: `name`, `ok` (its check passed),
#' `disabled` (turned off by the option), `used` (`ok` and not `disabled`; for
#' `transport_methods`, whether the methods were registered at load), `why` (why the
#' check failed), `seconds` (the check's time), `what`, `use` and `fallback`.
#'
#' @examples
#' parallelly:::r_internals()[, c("name", "used")]
#'
#' @seealso [parallelly.options] (option `parallelly.internals.disable`)
#' @keywords internal
r_internals <- function() {
  checks <- r_internals_list()
  pending <- setdiff(names(checks), names(.package$internals))
  if (length(pending) > 0L) check_r_internals(pending)
  res <- .package$internals
  names <- names(checks)
  field <- function(x, name) vapply(names, function(n) x[[n]][[name]], FUN.VALUE = x[[1L]][[name]], USE.NAMES = FALSE)
  ok <- field(res, "ok")
  disabled <- vapply(names, internal_disabled, logical(1), USE.NAMES = FALSE)
  used <- ok & !disabled
  # Those decided at load (registrations) stay as they were decided.
  at_load <- vapply(names, function(n) isTRUE(checks[[n]]$at_load), logical(1), USE.NAMES = FALSE)
  used[at_load] <- vapply(names[at_load], function(n) isTRUE(.package$used_at_load[[n]]), logical(1))
  data.frame(name = names, ok = ok, disabled = disabled, used = used,
             why = field(res, "why"), seconds = field(res, "seconds"),
             what = field(checks, "what"), use = field(checks, "use"),
             fallback = field(checks, "fallback"), stringsAsFactors = FALSE)
}

parallel_internal <- function(name) {
  fun <- get0(name, envir = asNamespace("parallel"), mode = "function", inherits = FALSE)
  if (!is.function(fun)) stop(sprintf("parallel has no function %s()", name), call. = FALSE)
  fun
}

# --- The checks ------------------------------------------------------------------------

# The symbol is found, points at this session's temporary directory, and tempdir() can make
# a new one (what a forked worker needs once the symbol is reset).
check_r_temp_dir <- function() {
  path <- backend_r_temp_dir()
  if (!is.character(path)) stop("R_TempDir is not found by dlsym() in this R", call. = FALSE)
  if (!identical(normalizePath(path, mustWork = FALSE), normalizePath(tempdir(), mustWork = FALSE))) {
    stop(sprintf("R_TempDir (%s) is not tempdir() (%s)", path, tempdir()), call. = FALSE)
  }
  if (!"check" %in% names(formals(tempdir))) stop("tempdir() has no argument 'check'", call. = FALSE)
  TRUE
}

# Listen on a free port as makeClusterPSOCK() does, re-bind it (the backend reads the
# address back: 127.0.0.1), and see that the same R connection accepts a connection made to
# that address and reads from it.
check_listen_socket <- function() {
  server <- check_server_socket()
  port <- attr(server, "port")
  on.exit(close(server))
  ok <- backend_rebind_loopback(port)
  if (!isTRUE(ok)) stop("the listening socket was not re-bound", call. = FALSE)
  client <- socketConnection("127.0.0.1", port = port, blocking = TRUE, open = "a+b", timeout = 2)
  on.exit(close(client), add = TRUE)
  accepted <- socketAccept(server, blocking = TRUE, open = "a+b", timeout = 2)
  on.exit(close(accepted), add = TRUE)
  writeBin(as.raw(42L), client)
  flush(client)
  if (!identical(readBin(accepted, "raw", n = 1L), as.raw(42L))) stop("no byte arrived through the re-bound socket", call. = FALSE)
  TRUE
}

# A server socket on a port from the dynamic range (freePort() would test each port
# first: twice the cost), with the port as attribute "port".
check_server_socket <- function() {
  for (port in stealth_sample(49152:65535, 10L)) {
    server <- tryCatch(serverSocket(port), error = function(e) NULL)
    if (!is.null(server)) return(structure(server, port = port))
  }
  stop("no free port to listen on among 10 tried", call. = FALSE)
}

# Our loop answers messages written by this R's parallel exactly as parallel's own loop does.
check_work_loop <- function() {
  answers <- wire_answers()
  strip <- function(msgs) lapply(msgs, function(m) { m$time <- class(m$time); m })
  if (!identical(strip(answers$lean), strip(answers$base))) {
    stop("our worker loop answers differently from parallel:::workLoop()", call. = FALSE)
  }
  TRUE
}

# Tasks as this R's parallel writes them (sendCall()), with eval and lapply named and not,
# one that fails, and DONE; answered by parallel's loop and by ours. Computed once a run of
# check_r_internals() (both checks that use it share it when they run together).
wire_answers <- function() {
  cached <- .package$wire_answers_cache
  if (!is.null(cached)) return(cached)
  out <- rawConnection(raw(0), open = "wb")
  node <- structure(list(con = out), class = "SOCKnode")
  send <- parallel_internal("sendCall")
  send(node, eval, list(quote(1L + 1L)), tag = 1L)
  send(node, "eval", list(quote(1L + 1L)), tag = 2L)
  send(node, lapply, list(c(1, 4), sqrt), tag = 3L)
  send(node, "lapply", list(c(1, 4), sqrt), tag = 4L)
  send(node, stop, list("probe error"), tag = 5L)
  parallel_internal("postNode")(node, "DONE")
  input <- rawConnectionValue(out)
  close(out)
  base_loop <- parallel_internal("workLoop")
  answers <- list(base = run_loop_on(base_loop, input, 5L), lean = run_loop_on(lean_work_loop(), input, 5L))
  .package$wire_answers_cache <- answers
  answers
}

# Run a worker loop on `input` (messages to a worker) through a file connection, as on a
# worker's socket; the first `n` messages it answered.
run_loop_on <- function(loop, input, n) {
  file <- tempfile("parallelly-loop-check-")
  on.exit(unlink(file))
  writeBin(input, file)
  con <- file(file, open = "a+b")  # reads from the start, writes at the end
  # At DONE, parallel's loop closes its connection up to R 4.5 and leaves it to the
  # worker's exit from R 4.6 on (closeNode() closes only the master's nodes there); ours
  # closes it. Either way it is closed here once the loop has returned (connection_is_current():
  # not another connection that took its index).
  on.exit(if (connection_is_current(con)) close(con), add = TRUE)
  loop(structure(list(con = con), class = "SOCKnode"))
  if (connection_is_current(con)) close(con)
  bytes <- readBin(file, "raw", n = file.size(file))
  answers <- rawConnection(bytes[-seq_along(input)], open = "rb")
  on.exit(close(answers), add = TRUE)
  lapply(seq_len(n), function(i) unserialize(answers))
}

check_wire_names <- function() {
  answers <- wire_answers()
  expected <- list(
    list(type = "VALUE", value = 2L, success = TRUE, tag = 1L),
    list(type = "VALUE", value = 2L, success = TRUE, tag = 2L),
    list(type = "VALUE", value = list(1, 2), success = TRUE, tag = 3L),
    list(type = "VALUE", value = list(1, 2), success = TRUE, tag = 4L),
    list(type = "VALUE", value = structure("probe error", class = c("snow-try-error", "try-error")), success = FALSE, tag = 5L)
  )
  for (loop in c("base", "lean")) {
    got <- lapply(answers[[loop]], function(m) m[c("type", "value", "success", "tag")])
    if (!identical(got, expected)) {
      stop(sprintf("the %s worker loop does not answer tasks naming eval/lapply as it answers the functions",
                   if (loop == "base") "parallel:::workLoop()" else "our"), call. = FALSE)
    }
  }
  TRUE
}

check_task_position <- function() {
  for (name in c("clusterCall", "staticClusterApply", "dynamicClusterApply")) {
    vars <- all.names(body(parallel_internal(name)))
    need <- if (name == "staticClusterApply") c("i", "start") else "i"
    if (!all(need %in% vars)) stop(sprintf("parallel's %s() has no local %s", name, paste(need, collapse = " and ")), call. = FALSE)
  }
  TRUE
}

# The generics exist and dispatch (UseMethod()) on their first argument, and parallel's
# own methods, which ours fall back to, are there.
check_transport_methods <- function() {
  ns <- asNamespace("parallel")
  for (generic in c("sendData", "recvData", "recvOneData")) {
    if (!identical(body(parallel_internal(generic)), call("UseMethod", generic))) {
      stop(sprintf("parallel's %s() is not an S3 generic", generic), call. = FALSE)
    }
  }
  for (method in c("sendData.SOCK0node", "sendData.SOCKnode", "recvData.SOCK0node", "recvData.SOCKnode", "recvOneData.SOCKcluster")) {
    parts <- strsplit(method, ".", fixed = TRUE)[[1L]]
    if (is.null(utils::getS3method(parts[1L], parts[2L], optional = TRUE, envir = ns))) {
      stop(sprintf("parallel has no method %s()", method), call. = FALSE)
    }
  }
  TRUE
}

check_is_child <- function() {
  if (.Platform$OS.type == "windows") stop("no forked processing on MS Windows", call. = FALSE)
  value <- parallel_internal("isChild")()
  if (!is.logical(value) || length(value) != 1L || is.na(value)) stop("parallel:::isChild() is not TRUE or FALSE", call. = FALSE)
  TRUE
}
