# A local worker of this very R skips R's two front ends. `Rscript -e code` runs Rscript,
# which runs the shell script R_HOME/bin/R, which runs `uname` and three `sed`s for each -e
# before it starts the R binary: ~20 ms and half a dozen processes per worker, on the cores
# the workers start on. This session was itself started by that script, so its environment
# already holds what the script sets up (R_HOME, R_SHARE_DIR, LD_LIBRARY_PATH, ...): the
# binary is started directly, with the arguments and variables the front ends would have
# given it. Anything they would treat specially (a script file, --vanilla, --arch, ...)
# keeps the front ends, and so does a session whose environment is not theirs (the R
# internal "direct_start", R/internals.R).

# The R binary of this session (R_HOME/bin/exec/R).
r_binary <- function() file.path(R.home("bin"), paste0("exec", Sys.getenv("R_ARCH")), "R")

# The check of internal "direct_start" (R/internals.R): this session's environment is the
# one the front-end script sets up, and the binary is there to run.
check_direct_start <- function() {
  if (.Platform$OS.type != "unix" || Sys.info()[["sysname"]] != "Linux") stop("only on Linux")
  home <- R.home()
  env <- Sys.getenv(c("R_HOME", "R_SHARE_DIR", "R_INCLUDE_DIR", "R_DOC_DIR", "LD_LIBRARY_PATH"))
  if (!identical(normalizePath(env[["R_HOME"]], mustWork = FALSE), normalizePath(home, mustWork = FALSE))) {
    stop(sprintf("R_HOME ('%s') is not this R's home ('%s')", env[["R_HOME"]], home))
  }
  if (!all(nzchar(env))) stop(sprintf("%s not set (R not started by its front end)", paste(names(env)[!nzchar(env)], collapse = ", ")))
  # The script puts R's own library directory on the library path.
  if (!(file.path(home, "lib") %in% strsplit(env[["LD_LIBRARY_PATH"]], ":", fixed = TRUE)[[1]])) {
    stop(sprintf("LD_LIBRARY_PATH lacks %s", file.path(home, "lib")))
  }
  if (file.access(r_binary(), 1L) != 0L) stop(sprintf("no executable %s", r_binary()))
  TRUE
}

# `spec` (worker_launch_spec() of `opts`) as a direct start of this R's binary, or `spec`
# unchanged when the launcher is not this R's Rscript or its R arguments need a front end.
direct_r_spec <- function(opts, spec) {
  if (!launcher_is_this_r(opts$launcher) || !internal_ok("direct_start")) return(spec)
  r <- rscript_as_r_args(opts$worker_args)
  if (is.null(r)) return(spec)
  setup <- spec$args[seq_along(spec$args) > length(opts$worker_args)]
  spec$program <- r_binary()
  spec$args <- c("--no-echo", "--no-restore", r$args, "--args", setup)
  spec$env <- c(spec$env, r$env)
  # The script's shell would set PWD to the directory the worker starts in (the master's,
  # which setwd() does not record in PWD).
  pwd <- Sys.getenv("PWD")
  if (!nzchar(pwd) || !identical(normalizePath(pwd, mustWork = FALSE), normalizePath(getwd()))) {
    spec$env <- c(spec$env, PWD = getwd())
  }
  spec
}

# R options that Rscript and the front-end script pass on to the binary untouched.
passed_r_options <- "^--(no-echo|no-restore|no-save|no-readline|quiet|silent|(max-connections|max-ppsize|min-vsize|max-vsize|min-nsize|max-nsize|encoding)=[^ ]+)$"

# Rscript's arguments as the binary's: `--default-packages=` becomes R_DEFAULT_PACKAGES (as
# Rscript does), `-e code` gets the script's escapes (a space as ~+~, a newline as ~n~, which
# the binary turns back; so commandArgs() reads as before), without its word splitting and
# globbing; NULL for anything else.
rscript_as_r_args <- function(args) {
  out <- character(0)
  env <- character(0)
  i <- 1L
  while (i <= length(args)) {
    a <- args[i]
    if (identical(a, "-e") && i < length(args) && nzchar(args[i + 1L]) && !startsWith(args[i + 1L], "-")) {
      out <- c(out, a, gsub("\n", "~n~", gsub(" ", "~+~", args[i + 1L], fixed = TRUE), fixed = TRUE))
      i <- i + 2L
    } else if (startsWith(a, "--default-packages=")) {
      env[["R_DEFAULT_PACKAGES"]] <- sub("^--default-packages=", "", a)
      i <- i + 1L
    } else if (grepl(passed_r_options, a)) {
      out <- c(out, a)
      i <- i + 1L
    } else {
      return(NULL)
    }
  }
  list(args = out, env = env)
}
