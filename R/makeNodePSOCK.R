#' Create a PSOCK cluster node
#'
#' `makeNodePSOCK()` resolves the arguments of one worker into a launch specification (an
#' object of class `makeNodePSOCKOptions`) and, unless `action = "options"`, launches the
#' worker and connects to it. Local workers are started directly by the Rust backend, without
#' a shell; the resolved specification is kept for the node in this R session (not in the
#' node object, which stays small to serialize and hash) so that [cloneNode()] can start the
#' same worker again.
#'
#' @param worker Hostname or IP address of the worker. A logical attribute `localhost` forces
#' the local/remote decision. A `makeNodePSOCKOptions` object is launched as is.
#' @param master Hostname the worker connects back to (default: "localhost" for local
#' workers; with `rshcmd = "<srun>"`, the address Slurm has for the node the master runs
#' on, or this machine's name outside the allocation; with `rshcmd = "<qrsh>"`, this
#' machine's name).
#' @param port The port the master listens on.
#' @param connectTimeout Seconds to wait for the worker to connect.
#' @param timeout Socket inactivity timeout (seconds) on both sides.
#' @param rscript The command that starts R on the worker: a character vector whose first
#' element (after any leading `NAME=value` environment assignments) is the program and the
#' rest its first arguments. `NULL` means `Rscript` (the full path of this R installation's
#' Rscript when `homogeneous`); a `"*"` element stands for that default. Wrap it in `I()` to
#' use it exactly as given.
#' @param homogeneous Whether the worker's host has R installed where this machine has it.
#' `NULL` means TRUE for local workers and for remote host names without a domain.
#' @param rscript_args Extra arguments to the R program, placed before ours; a `"*"` element
#' marks where ours go.
#' @param rscript_envs Environment variables for the worker: named elements are set, unnamed
#' ones copy this session's value, `NA` values unset the variable. They are set in the
#' worker's process environment, so R's start-up sees them. Any name without `=` is taken,
#' also one a shell cannot assign (such as `"NON-EXISTING-ENVVAR-1"`, passed with `env`);
#' note that a shell started by the worker (e.g. `system()` with dash) drops those.
#' @param rscript_libs Library paths put first on the worker's `.libPaths()`; `"*"` stands
#' for the worker's own paths.
#' @param rscript_startup R expressions or code strings evaluated on the worker before it
#' starts serving tasks.
#' @param rscript_sh The shell quoting for command lines shown (and run on remote hosts):
#' `"auto"`, `"sh"`, `"cmd"` or `"none"`; two values give the inner and outer quoting.
#' @param default_packages The packages the worker attaches at start-up (`"*"` stands for
#' `getOption("defaultPackages")`); `NULL` leaves R's default.
#' @param methods Whether the default `default_packages` include methods.
#' @param socketOptions Socket options set on the worker (default `"no-delay"`); `NULL` or
#' `"NULL"` for none.
#' @param useXDR Whether tasks are serialized in big-endian XDR format (node class
#' `SOCKnode`) rather than the native format (`SOCK0node`, the default).
#' @param outfile Where the worker's output goes; `NULL` shares this session's output.
#' @param renice A positive niceness increment for the worker process (local workers).
#' @param rshcmd `NULL` (the default) uses the built-in SSH client for remote workers, and
#' OpenSSH's `ssh` for a host whose setup the built-in client cannot honour (a
#' `ProxyCommand`, a certificate, a `ControlMaster` socket, a password login, an `rshopts`
#' flag it lacks, ...; see `vignette("remote-clusters", package = "parallelly")` and option
#' `parallelly.ssh.client`); `"<ssh>"` uses the built-in client only (an error names what it
#' cannot honour). A
#' command such as `"ssh"`, or a `function(rshopts, worker)` returning a command line, uses
#' that external client instead. `"<srun>"`, inside a Slurm allocation, starts the worker
#' as a job step of it on node `worker` (`srun --nodes=1 --ntasks=1 --overlap -w worker`,
#' no shell; `rshopts` are added srun options); the master's own node gets local workers.
#' See `vignette("slurm", package = "parallelly")`. `"<qrsh>"`, inside a Grid Engine job
#' with a parallel environment, starts the worker as a task of it on host `worker`
#' (`qrsh -inherit -V worker`); the master's own host gets local workers. See
#' `vignette("gridengine", package = "parallelly")`. `"<hpc>"` is `"<srun>"` in a Slurm job,
#' `"<qrsh>"` in a Grid Engine job, and an error outside any job unless a fallback follows,
#' as in `c("<hpc>", "<ssh>")`. `"<pjrsh>"` (Fujitsu PJM) is not supported yet.
#' @param user The user name on a remote host.
#' @param revtunnel Whether a remote worker reaches the master through a reverse tunnel over
#' the SSH connection (`NA`: yes for remote workers reached by SSH, no for other `rshcmd`s
#' such as `"<srun>"` and `"<qrsh>"`).
#' @param rshlogfile A log file for an external SSH client.
#' @param rshopts Options of OpenSSH's `ssh` (split into words as a shell splits them). The
#' built-in client implements `-p`, `-l`, `-F`, `-i`, `-J`, `-c`, `-m`, `-4`, `-6`, `-C` and
#' `-o Keyword=value` (read like a line of the ssh configuration, before it); flags such as
#' `-q`, `-v` and `-T` change nothing for it; any other `ssh` flag makes the host use
#' OpenSSH's `ssh`. Passed as they are to an external client.
#' @param rank The index of the node.
#' @param manual,dryrun,quiet Print the launch command instead of (or before) launching.
#' @param setup_strategy How the workers of a host are started. `"fork"` starts one R
#' process per host (locally, or over the held SSH connection), the fork server, and forks
#' every worker of that host from it: a worker then costs a fork and a connect instead of a
#' fresh R session (32 local workers in about 0.4 s instead of 3 s here, with a quarter of
#' the memory). Forked workers behave as fresh ones: their own PID, process group and R
#' temporary directory, no `.Random.seed`, no inherited connections, parallelly not loaded;
#' they die with the server, which dies with the master, and the server is stopped with the
#' last worker it forked. What runs once in the server rather than in each worker: R's
#' start-up, `rscript_startup`, and `rscript_libs`. A host whose R library lacks a
#' parallelly that can fork (an older version, or none; not Linux) gets its workers the
#' `"parallel"` way. `"parallel"` starts all workers of a host at once, each its own R;
#' `"sequential"` one after the other. `"auto"` (the default) is `"fork"` on Linux unless
#' there is start-up code for each worker (`rscript_startup`, or `-e` in `rscript_args`:
#' code that may have effects outside R, such as opening a file or a database connection),
#' else `"parallel"`; and a setup of no more local workers than [availableCores()] (and at
#' most 4) starts them `"parallel"` while no fork server runs for them yet: started at once,
#' each on its own core, they are ready as soon as one forking server would be. With
#' `rshcmd = "<srun>"` or `"<qrsh>"`, `"fork"` runs one fork server per node as a job step
#' (a task) and forks that node's workers from it; `"auto"` does so for a node that gets two
#' or more workers (8 workers on one Grid Engine host: 0.7 s instead of 1.9 s here) and
#' starts a single worker as a step (task) of its own, which is faster than a server; a
#' node whose R cannot load this package's current version gets plain steps (tasks).
#' @param calls Add the call stack to the worker's command line.
#' @param \dots Three further arguments, named:
#'   * `autoRestart`: how many times a node found dead when the cluster next sends it work is
#'     relaunched (same host, same options) before the work is sent; `TRUE` means 3. A host
#'     whose workers die that many times in a row is not relaunched on again until
#'     [repairCluster()]. Default: option `parallelly.makeNodePSOCK.autoRestart`, else 0.
#'   * `retries`: how many times the task a worker held when it died is sent again, to a
#'     relaunched worker. A task that still crashes its worker fails the call with an error
#'     that says "crash" and names the task and the causes of death. Default: option
#'     `parallelly.makeNodePSOCK.retries`, else 0.
#'   * `rscript_call`: the R code that starts the worker's loop once R is up, as a string or
#'     a call (e.g. `quote(parallel:::.workRSOCK())`); code that does not parse is an error.
#'     Default: option `parallelly.makeNodePSOCK.rscript_call`, else ours (base R's
#'     `parallel:::.workRSOCK()` on other hosts; local workers run our own entry code, which
#'     does what it does without loading parallel, and a leaner loop). Workers with their
#'     own `rscript_call` are not forked by a fork server (`setup_strategy = "fork"` becomes
#'     `"parallel"`).
#'
#'   They are not formal arguments so that the argument names of `makeNodePSOCK()` and
#'   [makeClusterPSOCK()] are exactly the reference's (\pkg{future} reads them, and caches
#'   what it read when it is installed); the options reach workers that \pkg{future} starts.
#'   Any other argument is an error.
#' @param action "launch" or "options".
#' @param verbose Print debug output.
#' @return A `RichSOCKnode`, a `makeNodePSOCKOptions` object, or NULL for a dry run.
#' @examples
#' # The launch specification of a worker, without starting it
#' opts <- makeNodePSOCK(port = 11562L, action = "options")
#' cat(opts$cmd, "\n")
#' # What a remote worker would run (dry run: nothing is started)
#' makeNodePSOCK("n1.remote.org", port = 11562L, user = "alice", dryrun = TRUE)
#' @export
makeNodePSOCK <- function(worker = getOption2("parallelly.localhost.hostname", "localhost"),
                          master = NULL, port,
                          connectTimeout = getOption2("parallelly.makeNodePSOCK.connectTimeout", 2 * 60),
                          timeout = getOption2("parallelly.makeNodePSOCK.timeout", 30 * 24 * 60 * 60),
                          rscript = NULL, homogeneous = NULL, rscript_args = NULL,
                          rscript_envs = NULL, rscript_libs = NULL, rscript_startup = NULL,
                          rscript_sh = c("auto", "cmd", "sh", "none"),
                          default_packages = c("datasets", "utils", "grDevices", "graphics", "stats", if (methods) "methods"),
                          methods = TRUE,
                          socketOptions = getOption2("parallelly.makeNodePSOCK.socketOptions", "no-delay"),
                          useXDR = getOption2("parallelly.makeNodePSOCK.useXDR", FALSE),
                          outfile = "/dev/null", renice = NA_integer_,
                          rshcmd = getOption2("parallelly.makeNodePSOCK.rshcmd", NULL),
                          user = NULL, revtunnel = NA, rshlogfile = NULL,
                          rshopts = getOption2("parallelly.makeNodePSOCK.rshopts", NULL),
                          rank = 1L, manual = FALSE, dryrun = FALSE, quiet = FALSE,
                          setup_strategy = getOption2("parallelly.makeNodePSOCK.setup_strategy", "auto"),
                          calls = getOption2("parallelly.makeNodePSOCK.calls", FALSE),
                          ..., action = c("launch", "options"), verbose = FALSE) {
  if (inherits(worker, "makeNodePSOCKOptions")) {
    return(launchNodePSOCK(worker, verbose = verbose))
  }
  action <- match.arg(action)
  if (missing(port)) stop_arg("port", "is missing; give the port the master listens on")
  check_flag(methods, "methods")  # before the default of default_packages reads it
  # The original arguments, before resolution (cloneNode(method = "vanilla") replays them).
  arguments <- mget(setdiff(names(formals()), c("action", "...")), envir = environment())
  arguments <- c(arguments, node_extra_arguments(list(...)))

  options <- resolve_node_options(arguments)
  # Kept as given, except `calls`: future hands its own call stack down under that name, and
  # a node must not carry it (it holds live objects, so the node's hash would change).
  arguments$calls <- options$calls
  options$arguments <- arguments
  options$make_fcn <- make_node_fcn
  if (action == "options") return(options)
  launchNodePSOCK(options, verbose = verbose)
}

# The arguments makeNodePSOCK() takes through `...` (see its help), with their defaults.
node_extra_arguments <- function(dots) {
  known <- c("autoRestart", "retries", "rscript_call")
  nms <- names(dots) %||% character(length(dots))
  bad <- !nms %in% known
  if (any(bad)) {
    what <- ifelse(nzchar(nms[bad]), nms[bad], "<unnamed>")
    stop_arg("...", "of makeNodePSOCK() takes only %s, not: %s", paste(known, collapse = ", "),
             paste(what, collapse = ", "))
  }
  defaults <- list(
    autoRestart = getOption2("parallelly.makeNodePSOCK.autoRestart", 0L),
    retries = getOption2("parallelly.makeNodePSOCK.retries", 0L),
    rscript_call = getOption2("parallelly.makeNodePSOCK.rscript_call", NULL)
  )
  for (name in nms) defaults[name] <- list(dots[[name]])
  defaults
}

# The options' `make_fcn` (as in the reference, the function that makes such a node): a small
# forwarder rather than makeNodePSOCK() itself, whose body would add ~8 KB to every node, and
# future hashes the whole cluster for every future.
# Without source references: an install that keeps sources would attach this file's whole
# text to it.
make_node_fcn <- utils::removeSource(local(function(...) parallelly::makeNodePSOCK(...), envir = baseenv()))

# Turn the arguments of makeNodePSOCK() into a complete, checked launch specification.
resolve_node_options <- function(a) {
  # A kind selected by a keyword such as "<srun>" resolves what is particular to it.
  rshcmd <- resolve_rshcmd_keyword(check_rshcmd(a$rshcmd), isTRUE(a$dryrun))
  a$rshcmd <- rshcmd
  kind <- kind_for_rshcmd(rshcmd)
  opts <- list(worker = resolve_worker(a, kind))
  localhost <- attr(opts$worker, "localhost")
  port <- suppressWarnings(as.integer(a$port))
  if (length(port) != 1L || is.na(port) || port < 0L || port > 65535L) {
    stop_arg("port", "must be a single port number in 0..65535: %s", deparse1(a$port))
  }
  opts$port <- port
  opts$connectTimeout <- check_seconds(a$connectTimeout, "connectTimeout")
  opts$timeout <- check_seconds(a$timeout, "timeout")
  # Checked whether or not this launch uses them: a wrong type is a mistake either way.
  check_strings(a$rshopts, "rshopts")
  check_strings(a$user, "user", single = TRUE)
  check_strings(a$rscript_libs, "rscript_libs")
  check_strings(a$socketOptions, "socketOptions", single = TRUE)
  if (!is.null(a$rshlogfile) && !isTRUE(a$rshlogfile) && !is_false_like(a$rshlogfile)) {
    check_strings(a$rshlogfile, "rshlogfile", single = TRUE)
  }
  opts <- c(opts, resolve_reachability(a, opts$worker, rshcmd, kind))
  opts <- c(opts, resolve_worker_launch(a, localhost, opts$homogeneous))
  opts <- c(opts, resolve_remote_access(a, localhost, rshcmd, opts$worker))
  rshcmd <- opts$rshcmd  # OpenSSH's ssh where the built-in client cannot serve the host
  opts <- c(opts, resolve_node_policy(a))
  opts$rscript_call <- resolve_rscript_call(a$rscript_call)
  opts$setup_strategy <- resolve_setup_strategy(a$setup_strategy, opts, rshcmd, a$rscript_startup, a$rscript_args,
                                                kind, own_entry = !is.null(opts$rscript_call))
  # "auto" may still start few local workers plain (fork_server_pays(), R/forkServer.R).
  opts$setup_auto <- identical(a$setup_strategy[1L], "auto")
  opts$localMachine <- localhost
  opts$rscript_label <- getOption2("parallelly.makeNodePSOCK.rscript_label", NULL)

  opts$worker_args <- worker_r_args(opts)
  opts$cmd <- worker_command_line(opts, port = opts$port)
  opts$local_cmd <- opts$cmd
  if (!localhost) {
    opts$rsh_call <- if (is.function(kind$launch_line)) kind$launch_line(opts) else rsh_call_line(opts)
    opts$local_cmd <- paste(opts$rsh_call, sh_quote(opts$cmd, type = opts$rscript_sh[2]))
  }
  class(opts) <- c("makeNodePSOCKOptions", "makeNodeOptions")
  opts
}

# The worker's name, with attribute `localhost` (TRUE for this machine).
resolve_worker <- function(a, kind = NULL) {
  worker <- a$worker
  if (!is.character(worker) || length(worker) != 1L || is.na(worker) || !nzchar(worker)) {
    stop_arg("worker", "must be a single, non-empty hostname: %s", deparse1(worker))
  }
  if (grepl("[[:space:]]", worker)) {
    stop_arg("worker", "must be a hostname without spaces: '%s'", worker)
  }
  localhost <- attr(worker, "localhost", exact = TRUE)
  # A scheduler's kind (rshcmd = "<srun>", say): the workers of the node the master runs on
  # are local ones.
  if (is.function(kind$worker_is_local) && !is.logical(localhost) && kind$worker_is_local(worker)) localhost <- TRUE
  if (!is.logical(localhost) || length(localhost) != 1L || is.na(localhost)) {
    localhost_names <- c(getOption2("parallelly.localhost.hostname", "localhost"), "localhost", "127.0.0.1")
    localhost <- worker %in% localhost_names
    if (!localhost && isTRUE(is_localhost(worker))) {
      localhost <- TRUE
      worker <- "localhost"
    }
  }
  attr(worker, "localhost") <- localhost
  worker
}

# How the worker reaches the master: list(revtunnel, master, homogeneous).
resolve_reachability <- function(a, worker, rshcmd, kind = NULL) {
  localhost <- attr(worker, "localhost")
  revtunnel <- a$revtunnel
  if (!is.logical(revtunnel) || length(revtunnel) != 1L) {
    stop_arg("revtunnel", "must be TRUE, FALSE or NA: %s", deparse1(revtunnel))
  }
  # As in the reference: NA means a reverse tunnel for a remote worker reached by SSH (our
  # built-in client or an ssh-like rshcmd), none for any other launcher (e.g. srun).
  if (is.na(revtunnel)) revtunnel <- !localhost && (is.null(rshcmd) || rshcmd_is_ssh(rshcmd))

  master <- a$master
  # A scheduler's kind checks its remote workers' options (a job to run in, no reverse
  # tunnel) and knows the address its nodes reach the master at.
  if (is.function(kind$reachability) && !localhost) {
    master <- kind$reachability(revtunnel = revtunnel, master = master, dryrun = isTRUE(a$dryrun))
  }
  if (is.null(master)) {
    # A tunnelled remote worker connects to the server's end of the tunnel, which listens
    # on the remote host's IPv4 loopback address.
    master <- if (localhost) "localhost" else if (revtunnel) "127.0.0.1" else Sys.info()[["nodename"]]
  }
  if (!is.character(master) || length(master) != 1L || is.na(master) || grepl("[[:space:]]", master)) {
    stop_arg("master", "must be a single hostname: %s", deparse1(master))
  }

  homogeneous <- a$homogeneous
  if (is.null(homogeneous)) {
    homogeneous <- localhost || (!revtunnel && master %in% c("localhost", "127.0.0.1")) ||
      !(is_ip_number(worker) || is_fqdn(worker))
  }
  if (!is.logical(homogeneous) || length(homogeneous) != 1L || is.na(homogeneous)) {
    stop_arg("homogeneous", "must be TRUE or FALSE: %s", deparse1(homogeneous))
  }
  list(revtunnel = revtunnel, master = master, homogeneous = homogeneous)
}

# What the worker's R is started with: Rscript, packages, output, environment, arguments.
resolve_worker_launch <- function(a, localhost, homogeneous) {
  opts <- list()
  opts$rscript_sh <- resolve_rscript_sh(a$rscript_sh, localhost)
  launcher <- resolve_rscript(a$rscript, homogeneous)
  opts$rscript <- launcher$display
  opts$launcher <- launcher
  opts$default_packages <- resolve_default_packages(a$default_packages)
  opts$methods <- check_flag(a$methods, "methods")
  opts$socketOptions <- a$socketOptions
  opts$useXDR <- check_flag(a$useXDR, "useXDR")
  outfile <- a$outfile
  if (!is.null(outfile) && (!is.character(outfile) || length(outfile) != 1L || is.na(outfile))) {
    stop_arg("outfile", "must be NULL or a single file path: %s", deparse1(outfile))
  }
  opts$outfile <- outfile
  renice <- a$renice
  if (isTRUE(renice)) renice <- 1L
  renice <- suppressWarnings(as.integer(renice))
  if (length(renice) != 1L) stop_arg("renice", "must be a single integer: %s", deparse1(a$renice))
  opts$renice <- renice
  opts$rscript_envs <- resolve_rscript_envs(a$rscript_envs)
  opts$rscript_libs <- a$rscript_libs
  opts$rscript_startup <- resolve_rscript_startup(a$rscript_startup)
  opts$rscript_args <- resolve_rscript_args(a$rscript_args)
  opts
}

# How a remote host is reached: the client (rshcmd), the built-in client's settings, logs.
resolve_remote_access <- function(a, localhost, rshcmd, worker) {
  opts <- list()
  opts$rshcmd <- rshcmd
  opts$user <- a$user
  rshlogfile <- a$rshlogfile
  if (isTRUE(rshlogfile)) rshlogfile <- tempfile("parallelly_makeClusterPSOCK_", fileext = ".log")
  if (is_false_like(rshlogfile)) rshlogfile <- NULL
  opts$rshlogfile <- rshlogfile
  opts$rshopts <- a$rshopts
  if (!localhost && (is.null(rshcmd) || identical(rshcmd, "<ssh>"))) {
    opts$rshcmd <- NULL
    opts <- resolve_ssh_client(opts, as.character(worker), rshcmd, resolve_ssh_settings(a$user, a$rshopts))
  }
  opts
}

# The node's place and policies: rank, manual/dry runs, self-healing budgets.
resolve_node_policy <- function(a) {
  opts <- list()
  rank <- suppressWarnings(as.integer(a$rank))
  if (length(rank) != 1L || is.na(rank) || rank < 1L) {
    stop_arg("rank", "must be a single positive integer: %s", deparse1(a$rank))
  }
  opts$rank <- rank
  opts$manual <- check_flag(a$manual, "manual")
  opts$dryrun <- check_flag(a$dryrun, "dryrun")
  opts$quiet <- check_flag(a$quiet, "quiet")
  opts$calls <- resolve_calls(a$calls)
  autoRestart <- a$autoRestart
  if (isTRUE(autoRestart)) autoRestart <- 3L
  if (is_false_like(autoRestart)) autoRestart <- 0L
  opts$autoRestart <- check_count(autoRestart, "autoRestart")
  opts$retries <- check_count(a$retries, "retries")
  opts
}

# rscript_call: NULL (our entry code), or the worker's entry code as one line of R.
resolve_rscript_call <- function(call) {
  if (is.null(call)) return(NULL)
  if (is.language(call)) call <- deparse1(call, collapse = ";")
  if (!is.character(call) || length(call) != 1L || is.na(call) || !nzchar(trimws(call))) {
    stop_arg("rscript_call", "must be a single string of R code, or a call: %s", deparse1(call))
  }
  ok <- tryCatch({ parse(text = call, keep.source = FALSE); TRUE }, error = function(e) conditionMessage(e))
  if (!isTRUE(ok)) stop_arg("rscript_call", "is not valid R code (%s): %s", sub("\n.*$", "", ok), call)
  call
}

resolve_setup_strategy <- function(setup_strategy, opts, rshcmd, rscript_startup = NULL, rscript_args = NULL,
                                   kind = NULL, own_entry = FALSE) {
  strategies <- c("auto", "fork", "parallel", "sequential")
  if (!is.character(setup_strategy) || length(setup_strategy) < 1L || !setup_strategy[1L] %in% strategies) {
    stop_arg("setup_strategy", "must be \"auto\", \"fork\", \"parallel\" or \"sequential\": %s", deparse1(setup_strategy))
  }
  setup_strategy <- setup_strategy[1L]
  auto <- setup_strategy == "auto"
  if (auto) {
    # Forked workers share what ran in the server: per-worker start-up code (rscript_startup,
    # or `-e` code among the R arguments) needs its own R.
    fork_ok <- identical(Sys.info()[["sysname"]], "Linux") && length(rscript_startup) == 0L &&
      !any(as.character(rscript_args) %in% c("-e", "--file"))
    setup_strategy <- if (fork_ok) "fork" else "parallel"
  }
  localhost <- attr(opts$worker, "localhost")
  # Parallel setup: all local workers at once, and all workers of a remote host at once
  # over its held SSH connection or through a scheduler's kind; never for manual or dry
  # runs or an external SSH client.
  parallel_ok <- !opts$manual && !opts$dryrun &&
    ((localhost && opts$homogeneous) || (!localhost && (is.null(rshcmd) || !is.null(kind))))
  if (setup_strategy %in% c("parallel", "fork") && !parallel_ok) setup_strategy <- "sequential"
  # A forked worker runs the fork server's loop, not an entry code of its own.
  if (own_entry && setup_strategy == "fork") setup_strategy <- "parallel"
  setup_strategy
}

check_seconds <- function(x, name) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) || x < 0) {
    stop_arg(name, "must be a single, finite, non-negative number of seconds: %s", deparse1(x))
  }
  as.numeric(x)
}

# `calls`: TRUE or FALSE; a call stack (a list of calls, as future passes along under this
# name) counts as FALSE.
resolve_calls <- function(calls) {
  if (is.logical(calls) && length(calls) == 1L && !is.na(calls)) return(calls)
  if ((is.pairlist(calls) || is.list(calls)) && all(vapply(calls, is.language, NA))) return(FALSE)
  stop_arg("calls", "must be TRUE or FALSE: %s", deparse1(calls))
}

# NULL or "" (the built-in SSH client), a character vector naming an SSH-like client and its
# first arguments, or a function(rshopts, worker) that returns the command line.
check_rshcmd <- function(rshcmd) {
  if (is.null(rshcmd) || identical(rshcmd, "")) return(NULL)
  if (is.function(rshcmd)) {
    if (!all(c("rshopts", "worker") %in% names(formals(rshcmd)))) {
      stop_arg("rshcmd", "must be a function with arguments 'rshopts' and 'worker'")
    }
    return(rshcmd)
  }
  if (!is.character(rshcmd) || length(rshcmd) == 0L || anyNA(rshcmd) || !all(nzchar(rshcmd))) {
    stop_arg("rshcmd", "must be NULL (the built-in SSH client), a character vector naming the client and its options, or a function(rshopts, worker): %s", deparse1(rshcmd))
  }
  rshcmd
}

# Whether an external rshcmd is an SSH client (its reverse tunnels work as ssh's -R does).
rshcmd_is_ssh <- function(rshcmd) {
  if (!is.character(rshcmd)) return(identical(attr(rshcmd, "type", exact = TRUE), "ssh"))
  type <- attr(rshcmd, "type", exact = TRUE)
  if (is.character(type)) return(identical(type, "ssh"))
  first <- rshcmd[1L]
  first == "<ssh>" || grepl("^(ssh|plink)(\\.exe)?$", basename(first), ignore.case = TRUE)
}

check_strings <- function(x, name, single = FALSE) {
  if (is.null(x)) return(invisible(x))
  if (!is.character(x) || anyNA(x) || (single && length(x) != 1L)) {
    what <- if (single) "NULL or a single string" else "NULL or a character vector"
    stop_arg(name, "must be %s: %s", what, deparse1(x))
  }
  invisible(x)
}

check_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    stop_arg(name, "must be TRUE or FALSE: %s", deparse1(x))
  }
  x
}

resolve_rscript_sh <- function(rscript_sh, localhost) {
  choices <- c("auto", "cmd", "sh", "none")
  if (!is.character(rscript_sh) || length(rscript_sh) < 1L || !all(rscript_sh %in% choices)) {
    stop_arg("rscript_sh", "must be one or two of %s: %s",
             paste(sQuote(choices, FALSE), collapse = ", "), deparse1(rscript_sh))
  }
  if (length(rscript_sh) > 2L) rscript_sh <- rscript_sh[1L]
  rscript_sh <- rep_len(rscript_sh, 2L)
  # "auto" is sh: this package runs on Linux, and a remote host's login shell is sh-like
  # (a Windows worker needs rscript_sh = "cmd" given explicitly).
  rscript_sh[rscript_sh == "auto"] <- "sh"
  rscript_sh
}

# The launcher: leading NAME=value elements become environment variables of the worker
# process, the next element is the program, the rest its first arguments.
resolve_rscript <- function(rscript, homogeneous) {
  default <- if (homogeneous) file.path(R.home("bin"), "Rscript") else "Rscript"
  if (is.null(rscript)) rscript <- default
  if (!is.character(rscript) || length(rscript) < 1L || anyNA(rscript)) {
    stop_arg("rscript", "must be a character vector naming the R launcher: %s", deparse1(rscript))
  }
  as_is <- inherits(rscript, "AsIs")
  rscript <- unclass(rscript)
  rscript[rscript == "*"] <- default
  is_env <- grepl("^[[:alpha:]_][[:alnum:]_]*=", rscript)
  first <- which(!is_env)[1L]
  if (is.na(first)) {
    stop_arg("rscript", "names no program, only environment assignments: %s", deparse1(rscript))
  }
  is_env[seq_along(is_env) >= first] <- FALSE
  env_parts <- rscript[is_env]
  env <- sub("^[^=]*=", "", env_parts)
  names(env) <- sub("=.*$", "", env_parts)
  program <- rscript[first]
  if (homogeneous && !as_is) program <- find_program(program)
  rest <- rscript[seq_along(rscript) > first]
  display <- c(env_parts, sh_quote(program), sh_quote(rest))
  list(program = program, args = rest, env = env, display = paste(display, collapse = " "),
       is_r = grepl("^R(term)?(\\.exe)?$", basename(program), ignore.case = TRUE))
}

# The full path of a program. Sys.which() runs a shell, so names are looked up once per
# session and PATH; absolute paths need no look-up.
find_program <- function(program) {
  if (startsWith(program, "/")) return(normalizePath(program, mustWork = FALSE))
  key <- paste(program, Sys.getenv("PATH"), sep = "\r")
  cache <- .package$programs
  found <- get0(key, envir = cache, inherits = FALSE)
  if (is.null(found)) {
    found <- Sys.which(program)
    found <- if (nzchar(found)) normalizePath(found, mustWork = FALSE) else program
    assign(key, found, envir = cache)
  }
  found
}

resolve_default_packages <- function(pkgs) {
  if (is.null(pkgs)) return(NULL)
  if (!is.character(pkgs) || anyNA(pkgs)) {
    stop_arg("default_packages", "must be a character vector of package names: %s", deparse1(pkgs))
  }
  if (any(pkgs == "*")) {
    pkgs <- unique(unlist(lapply(pkgs, function(p) if (p == "*") getOption("defaultPackages") else p)))
  }
  pattern <- sprintf("^%s$", .standard_regexps()$valid_package_name)
  bad <- pkgs[!grepl(pattern, pkgs)]
  if (length(bad) > 0L) {
    stop_arg("default_packages", "specifies invalid package names: %s",
             paste(sQuote(bad, FALSE), collapse = ", "))
  }
  pkgs
}

# rscript_envs: named values are set, NA values unset, unnamed names copy the local value.
resolve_rscript_envs <- function(envs) {
  if (is.null(envs) || length(envs) == 0L) return(list(set = character(0), unset = character(0)))
  if (!is.character(envs)) {
    stop_arg("rscript_envs", "must be a character vector: %s", deparse1(envs))
  }
  names <- names(envs)
  if (is.null(names)) names <- rep("", length(envs))
  copy <- !nzchar(names)
  names[copy] <- envs[copy]
  values <- unname(envs)
  if (any(copy)) {
    local <- Sys.getenv(names[copy], unset = NA_character_, names = FALSE)
    missing <- is.na(local)
    if (any(missing)) {
      warning(sprintf("Did not pass down missing environment variables to cluster node: %s",
                      paste(sQuote(names[copy][missing], FALSE), collapse = ", ")), call. = FALSE)
    }
    values[copy] <- local
    keep <- !(copy & is.na(values))
    names <- names[keep]
    values <- values[keep]
    copy <- copy[keep]
  }
  # Any name an environment can hold (as the reference, which sets them from R code), also
  # one a shell could not assign (e.g. with a '-'): such names are passed with env(1).
  bad <- !nzchar(names) | grepl("=", names, fixed = TRUE)
  if (any(bad)) {
    stop_arg("rscript_envs", "has invalid environment variable names (empty, or with '='): %s",
             paste(sQuote(names[bad], FALSE), collapse = ", "))
  }
  unset <- names[is.na(values)]
  set <- values[!is.na(values)]
  names(set) <- names[!is.na(values)]
  list(set = set, unset = unset)
}

# rscript_startup: expressions or code strings, each becomes one -e 'invisible({...})'.
resolve_rscript_startup <- function(startup) {
  if (is.null(startup)) return(character(0))
  if (!is.list(startup)) startup <- list(startup)
  code <- vapply(startup, function(s) {
    if (is.character(s)) {
      paste(s, collapse = "\n")
    } else if (is.language(s)) {
      paste(deparse(s, width.cutoff = 500L), collapse = "\n")
    } else {
      stop_arg("rscript_startup", "must hold R expressions or code strings, not %s", class(s)[1L])
    }
  }, character(1))
  for (c in code) {
    ok <- tryCatch({ parse(text = c); TRUE }, error = function(e) conditionMessage(e))
    if (!isTRUE(ok)) stop_arg("rscript_startup", "has code that does not parse: %s", ok)
  }
  sprintf("invisible({%s})", gsub("\n", ";", code))
}

resolve_rscript_args <- function(args) {
  if (is.null(args)) return(character(0))
  if (!is.character(args) || anyNA(args)) {
    stop_arg("rscript_args", "must be a character vector: %s", deparse1(args))
  }
  if (sum(args == "*") > 1L) {
    stop_arg("rscript_args", "may contain at most one \"*\" placeholder: %s", deparse1(args))
  }
  args
}
