# The worker loop of our local workers: the messages of base R's parallel:::workLoop()
# (EXEC answered by VALUE with the task's tag, DONE closes the connection; a task's error
# comes back as a "snow-try-error" string with success = FALSE; an interrupt ends the task
# without an answer), with less R on the way per message: no S3 dispatch for each read and
# write, no summary() of the connection inside serialize(), and no tryCatch() per message.
#
# Base R's loop sets up two tryCatch() calls for every message (one for interrupts around
# it, one for errors around the task), which is most of what a worker does for a tiny task.
# Here one tryCatch() (errors and interrupts) stays set up while tasks succeed: a condition
# ends the inner loop, the outer one answers it (a task's error) or not (an interrupt) and
# sets the handlers up again. An error that is not the task's (a broken connection) is
# raised again and ends the worker, as in base R's loop.
#
# A fresh local worker of this same R does not run parallel:::.workRSOCK() either: its entry
# (lean_worker_main()) parses the same KEY=VALUE arguments, sends output where OUT= says,
# prints the same "starting worker" line, connects with the same retries until SETUPTIMEOUT
# and serves with this loop. So it never loads the parallel namespace (~20 ms of CPU at
# start-up, ~12% of an R start); a task that needs parallel loads it as usual.
#
# Both functions are byte-compiled when this package is installed. A worker is a fresh R
# that has not loaded this package, so it gets them from a file that this session writes
# once into its temporary directory (lean_worker_entry_file()), with the base environment
# as their enclosure (a task's globals cannot shadow what they call): the worker's R then
# has nothing to compile. Code sent as text on the command line (as before) was compiled by
# the worker's JIT before it could connect: the compiler's namespace and the compilation,
# ~45 ms a worker. Forked workers get the loop from lean_work_loop() and connect themselves
# (R/forkServerProcess.R).
#
# Workers on other hosts, where this package may be missing or another R runs, and local
# workers of another R, keep base R's entry code.

lean_worker_loop <- function(master) {
  con <- master$con
  xdr <- !inherits(master, "SOCK0node")
  msg <- NULL
  t1 <- NULL
  task <- FALSE
  repeat {
    # Serve until DONE (NULL), an interrupt (TRUE) or an error (its condition).
    r <- tryCatch(repeat {
      msg <- NULL
      msg <- unserialize(con)
      if (msg$type == "DONE") {
        close(con)
        break
      }
      if (msg$type == "EXEC") {
        t1 <- proc.time()
        task <- TRUE
        fun <- msg$data$fun
        args <- msg$data$args
        nm <- names(args)
        # The two tasks parallel sends most, named on the wire (eval for clusterEvalQ(),
        # lapply for parLapply() and its kin) with the arguments it gives them, are called
        # directly: the same function on the same values as do.call(quote = TRUE), without
        # quoting each argument first (an lapply() and two closure calls an argument: ~3 us
        # of a tiny task's ~40 us here). Any other shape goes through do.call().
        two <- is.character(fun) && length(fun) == 1L && !is.na(fun) && is.list(args) && length(args) == 2L &&
          (is.null(nm) || (!anyNA(nm) && nm[1L] == ""))
        value <- if (two && fun == "eval" && (is.null(nm) || nm[2L] == "env" || nm[2L] == "envir" || nm[2L] == "")) {
          eval(args[[1L]], args[[2L]])
        } else if (two && fun == "lapply" && (is.null(nm) || nm[2L] == "FUN" || nm[2L] == "")) {
          lapply(args[[1L]], args[[2L]])
        } else {
          do.call(fun, args, quote = TRUE)
        }
        fun <- args <- nm <- NULL
        task <- FALSE
        t2 <- proc.time()
        value <- list(type = "VALUE", value = value, success = TRUE, time = t2 - t1, tag = msg$data$tag)
        msg <- NULL
        serialize(value, con, xdr = xdr, ascii = FALSE)
        value <- NULL
      }
    }, error = function(e) e, interrupt = function(e) TRUE)
    if (is.null(r)) break
    fun <- args <- nm <- NULL
    intask <- task
    task <- FALSE
    if (isTRUE(r)) next
    if (!intask) stop(r)
    t2 <- proc.time()
    value <- structure(conditionMessage(r), class = c("snow-try-error", "try-error"))
    r <- NULL
    value <- list(type = "VALUE", value = value, success = FALSE, time = t2 - t1, tag = msg$data$tag)
    msg <- NULL
    serialize(value, con, xdr = xdr, ascii = FALSE)
    value <- NULL
  }
}

# What .workRSOCK() does with setup strategy "sequential" (the master sends its handshake as
# a task), then the loop; `workLoop` is found in its enclosure (see lean_worker_entry_file()).
# A function, not code run by local(): future's relay of immediate conditions looks for the
# worker's `master` node in the frames of the call stack and stops at the global environment.
lean_worker_main <- function() {
  args <- commandArgs(TRUE)
  # The last KEY=VALUE of a key wins, as in .workRSOCK()'s loop over the arguments.
  arg <- function(key, default) {
    values <- args[startsWith(args, paste0(key, "="))]
    if (length(values) > 0L) substring(values[length(values)], nchar(key) + 2L) else default
  }
  master <- arg("MASTER", "localhost")
  port <- as.integer(arg("PORT", NA))
  if (is.na(port)) stop("PORT must be specified")
  outfile <- arg("OUT", Sys.getenv("R_SNOW_OUTFILE"))
  timeout <- as.integer(arg("TIMEOUT", "2592000"))
  setup_timeout <- as.numeric(arg("SETUPTIMEOUT", "120"))
  xdr <- as.logical(arg("XDR", "TRUE"))
  if (nzchar(outfile)) {
    out <- file(outfile, open = "a")
    sink(out)
    sink(out, type = "message")
  }
  cat(sprintf("starting worker pid=%d on %s:%d at %s\n", Sys.getpid(), master, port, format(Sys.time(), "%H:%M:%OS3")))
  t0 <- Sys.time()
  delay <- 0.1
  repeat {
    con <- tryCatch(socketConnection(master, port = port, blocking = TRUE, open = "a+b", timeout = timeout),
                    error = identity)
    if (inherits(con, "connection")) break
    if (difftime(Sys.time(), t0, units = "secs") > setup_timeout) stop(con)
    Sys.sleep(delay)
    delay <- 1.5 * delay
  }
  # The loop this session put in the function's enclosure (lean_worker_entry_file()).
  workLoop <- get("workLoop", envir = parent.env(environment()), mode = "function", inherits = FALSE)
  workLoop(structure(list(con = con), class = if (xdr) "SOCKnode" else "SOCK0node"))
}

# The loop as a function in the base environment, for a worker forked from a process that has
# this package.
lean_work_loop <- function() {
  loop <- lean_worker_loop
  environment(loop) <- baseenv()
  loop
}

# The file (in this session's temporary directory) that local workers of this R read and
# run: lean_worker_main(), enclosed by an environment with `workLoop`, when our loop passed
# its check on this R (R/internals.R, "work_loop"); else a function that runs base R's
# entry, parallel:::.workRSOCK(). Written once a session (again should it go missing),
# through a temporary name and a rename, so that a worker never reads half of it.
#
# The check takes ~5 ms the first time; a fresh worker reads the file only after R's start
# (~150 ms). So the launcher starts the workers first and writes the file right after
# (local_launcher()): the first cluster of a session does not wait for the check before its
# first launch. The workers' code waits for the file (lean_worker_entry_code()).
lean_worker_entry_path <- function() file.path(tempdir(), "parallelly-worker-entry.rds")

lean_worker_entry_file <- function() {
  path <- .package$lean_entry_file
  if (is.null(path) || !file.exists(path)) {
    path <- lean_worker_entry_path()
    # (Checked with the wire names, which share its run of both loops: R/internals.R.)
    unchecked <- setdiff(c("work_loop", "wire_names"), names(.package$internals_ok))
    if ("work_loop" %in% unchecked) check_r_internals(unchecked)
    main <- if (internal_ok("work_loop")) {
      enclosure <- new.env(parent = baseenv())
      enclosure$workLoop <- lean_work_loop()
      main <- lean_worker_main
      environment(main) <- enclosure
      main
    } else {
      base_worker_main
    }
    partial <- tempfile("parallelly-worker-entry-", tmpdir = dirname(path))
    saveRDS(main, partial, compress = FALSE)  # read by every worker: no inflating
    if (!file.rename(partial, path)) {
      unlink(partial)
      stop(sprintf("could not write the local workers' entry file %s", path), call. = FALSE)
    }
    .package$lean_entry_file <- path
  }
  path
}

# The entry of a local worker when our loop failed its check: base R's, as from the code
# that other workers get (worker_entry_code).
base_worker_main <- function() {
  ns <- asNamespace("parallel")
  workRSOCK <- get0(".workRSOCK", envir = ns, inherits = FALSE)
  if (is.null(workRSOCK)) workRSOCK <- get(".slaveRSOCK", envir = ns, inherits = FALSE)
  workRSOCK()
}
environment(base_worker_main) <- baseenv()

# `Rscript -e` code that starts a local worker of this R with the entry above: it waits (up
# to a minute) for the file, which its launcher writes right after starting it. With
# `write`, the file is written now (a command that is printed for the user to run, say). (No
# glob characters and no backslashes: R's front-end script passes -e code through the
# shell's echo, partly unquoted.)
lean_worker_entry_code <- function(write = FALSE) {
  path <- if (write) lean_worker_entry_file() else lean_worker_entry_path()
  sprintf("local({f<-%s;t<-Sys.time()+60;while(!file.exists(f)&&Sys.time()<t)Sys.sleep(0.005);readRDS(f)})()",
          deparse1(path))
}

# Whether the arguments `args` start a worker with the entry file above.
uses_lean_worker_entry <- function(args) any(grepl(lean_worker_entry_path(), args, fixed = TRUE))

# Whether a worker started by `launcher` (resolve_rscript()) runs this very R, so that it can
# read our compiled entry: the Rscript of R.home(), without further arguments.
launcher_is_this_r <- function(launcher) {
  length(launcher$args) == 0L && length(launcher$env) == 0L &&
    identical(normalizePath(launcher$program, mustWork = FALSE),
              normalizePath(file.path(R.home("bin"), "Rscript"), mustWork = FALSE))
}
