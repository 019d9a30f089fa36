# The worker's command line. Local workers get it as an argument vector (no shell, so no
# quoting); the same vector, shell-quoted, is what dryrun/manual print and what a remote
# shell would run. Base R's parallel:::.workRSOCK() (and our local entry code, R/workerLoop.R) reads the
# trailing KEY=VALUE arguments.

worker_entry_code <- "workRSOCK<-tryCatch(parallel:::.workRSOCK,error=function(e)parallel:::.slaveRSOCK);workRSOCK()"

# R-level arguments (options, startup code, the worker loop), in the reference's order,
# placed around the user's rscript_args (at its "*" if there is one).
worker_r_args <- function(opts) {
  pkgs <- opts$default_packages
  internal <- character(0)
  if (!is.null(pkgs) && !opts$launcher$is_r) {
    internal <- c(internal, paste0("--default-packages=", paste(pkgs, collapse = ",")))
  }
  label <- worker_label(opts$rscript_label)
  if (!is.null(label)) internal <- c(internal, "-e", sprintf("#label=%s", label))
  socketOptions <- opts$socketOptions
  if (is.character(socketOptions) && length(socketOptions) == 1L && !is.na(socketOptions) &&
      socketOptions != "NULL") {
    internal <- c(internal, "-e", sprintf("options(socketOptions=%s)", deparse1(socketOptions)))
  }
  for (code in opts$rscript_startup) internal <- c(internal, "-e", code)
  libs <- opts$rscript_libs
  if (length(libs) > 0L) {
    parts <- ifelse(libs == "*", ".libPaths()", vapply(libs, deparse1, character(1)))
    internal <- c(internal, "-e", sprintf(".libPaths(c(%s))", paste(parts, collapse = ",")))
  }
  if (isTRUE(opts$calls)) {
    internal <- c(internal, "-e", sprintf("invisible(%s)", deparse1(paste0("calls:", calls_label()))))
  }
  user_args <- opts$rscript_args
  if (!any(grepl("parallel:::[.](workRSOCK|slaveRSOCK)", user_args))) {
    # Local workers of this R serve with our leaner loop (R/workerLoop.R); others with base
    # R's; or the user's rscript_call.
    if (!is.null(opts$rscript_call)) {
      entry <- opts$rscript_call
    } else if (isTRUE(attr(opts$worker, "localhost")) && launcher_is_this_r(opts$launcher) && !internal_disabled("work_loop")) {
      # The entry file runs our loop, or base R's should ours fail its check (decided when
      # the launcher writes the file, right after its first launch); a command printed for
      # the user to run gets the file at once.
      entry <- lean_worker_entry_code(write = isTRUE(opts$manual) || isTRUE(opts$dryrun))
    } else {
      entry <- worker_entry_code
    }
    internal <- c(internal, "-e", entry)
  }
  star <- which(user_args == "*")
  if (length(star) == 1L) {
    c(user_args[seq_len(star - 1L)], internal, user_args[seq_along(user_args) > star])
  } else {
    c(user_args, internal)
  }
}

# The KEY=VALUE arguments that parallel:::.workRSOCK() parses.
worker_setup_args <- function(opts, port) {
  num <- function(x) format(x, scientific = FALSE, trim = TRUE)
  c(
    paste0("MASTER=", opts$master),
    paste0("PORT=", port),
    paste0("OUT=", if (is.null(opts$outfile)) "" else opts$outfile),
    paste0("TIMEOUT=", num(opts$timeout)),
    paste0("XDR=", opts$useXDR),
    paste0("SETUPTIMEOUT=", num(opts$connectTimeout)),
    paste0("SETUPSTRATEGY=", opts$setup_strategy)
  )
}

# Everything needed to start a local worker process: program, argument vector, environment.
worker_launch_spec <- function(opts, port) {
  launcher <- opts$launcher
  env <- c(launcher$env, opts$rscript_envs$set)
  if (launcher$is_r && !is.null(opts$default_packages)) {
    env <- c(env, R_DEFAULT_PACKAGES = paste(opts$default_packages, collapse = ","))
  }
  list(
    program = launcher$program,
    args = c(launcher$args, opts$worker_args, worker_setup_args(opts, port)),
    env = env,
    unset = opts$rscript_envs$unset
  )
}

# The same launch as one shell command line (for dryrun/manual and remote shells).
worker_command_line <- function(opts, port) {
  spec <- worker_launch_spec(opts, port)
  type <- opts$rscript_sh[1L]
  quote_arg <- function(a) {
    if (type == "none" || grepl("^[[:alnum:]_./:=,+-]*$", a) && nzchar(a)) a else sh_quote(a, type = type)
  }
  env <- spec$env
  env_txt <- if (length(env) > 0L) vapply(paste0(names(env), "=", env), quote_arg, character(1)) else character(0)
  # A shell assigns only NAME=value with NAME an identifier; env(1) also takes other names,
  # and unsets variables.
  via_env <- length(spec$unset) > 0L || !all(is_shell_name(names(env)))
  env_prefix <- if (via_env) c("env", if (length(spec$unset) > 0L) paste("-u", spec$unset)) else character(0)
  program <- if (type == "none") spec$program else sh_quote(spec$program, type = type)
  paste(c(env_prefix, env_txt, program, vapply(spec$args, quote_arg, character(1))), collapse = " ")
}

is_shell_name <- function(names) grepl("^[[:alpha:]_][[:alnum:]_]*$", names)

# How a remote worker would be reached with an external SSH client (shown by dryrun/manual).
rsh_call_line <- function(opts) {
  rshcmd <- opts$rshcmd
  if (is.null(rshcmd) || identical(rshcmd, "")) rshcmd <- "ssh"
  rshopts <- c(
    if (isTRUE(opts$revtunnel)) sprintf("-R %d:%s:%d", opts$port, opts$master, opts$port),
    if (!is.null(opts$user) && !identical(opts$user, "*")) c("-l", opts$user),
    opts$rshopts
  )
  if (is.function(rshcmd)) {
    return(rshcmd(rshopts = paste(rshopts, collapse = " "), worker = as.character(opts$worker)))
  }
  paste(c(sh_quote(rshcmd), rshopts, as.character(opts$worker)), collapse = " ")
}

worker_label <- function(label) {
  if (is.null(label) || is_false_like(as.logical(label))) return(NULL)
  # Options set from environment variables arrive as strings ("TRUE").
  if (isTRUE(as.logical(label))) {
    script <- grep("^--file=", commandArgs(), value = TRUE)
    script <- if (length(script) > 0L) sub("^--file=", "", script[1L]) else "<interactive>"
    label <- sprintf("%s:%d:%s:%s", script, Sys.getpid(), Sys.info()[["nodename"]], Sys.info()[["user"]])
  }
  as.character(label)[1L]
}

calls_label <- function() {
  calls <- sys.calls()
  names <- vapply(calls, function(c) {
    f <- c[[1L]]
    if (is.name(f)) as.character(f) else "<fn>"
  }, character(1))
  paste(names, collapse = "->")
}
