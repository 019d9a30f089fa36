## Options and environment variables.
##
## Every 'parallelly.*' option has a legacy 'future.*' name, and every
## 'R_PARALLELLY_*' env var a legacy 'R_FUTURE_*' name; the lookups below
## fall back from one to the other so that old settings keep working.

## The other name of an option or env var, or NULL if there is none
legacy_name <- function(name, prefixes) {
  for (kk in 1:2) {
    from <- prefixes[kk]
    if (startsWith(name, from)) {
      return(paste0(prefixes[3L - kk], substring(name, nchar(from) + 1L)))
    }
  }
  NULL
}

getOption2 <- function(name, default = NULL) {
  value <- getOption(name, NULL)
  if (!is.null(value)) return(value)
  other <- legacy_name(name, c("parallelly.", "future."))
  if (!is.null(other)) value <- getOption(other, NULL)
  if (is.null(value)) default else value
}

getEnvVar2 <- function(name, default = NA_character_) {
  value <- Sys.getenv(name, NA_character_)
  if (!is.na(value)) return(value)
  other <- legacy_name(name, c("R_PARALLELLY_", "R_FUTURE_"))
  if (!is.null(other)) value <- Sys.getenv(other, NA_character_)
  if (is.na(value)) default else value
}


## Options that may be set from an env var at load time, with the mode the
## value is coerced to.  'split' options are comma-separated lists and
## 'na' options accept "NA" as a value.
package_option_specs <- function() {
  spec <- function(name, mode, split = FALSE, na = FALSE) {
    list(name = name, mode = mode, split = split, na = na)
  }
  psock <- function(name, ...) spec(paste0("makeNodePSOCK.", name), ...)
  list(
    spec("availableCores.methods", "character", split = TRUE),
    spec("availableCores.fallback", "integer", na = TRUE),
    spec("availableCores.min", "integer"),
    spec("availableCores.system", "integer", na = TRUE),
    spec("availableCores.logical", "logical"),
    spec("availableCores.omit", "integer"),
    spec("availableCores.max", "double"),
    spec("availableCores.fraction", "double"),
    spec("availableCores.methods.excludes", "character", split = TRUE),
    spec("availableWorkers.methods", "character", split = TRUE),
    spec("availableWorkers.methods.excludes", "character", split = TRUE),
    spec("maxWorkers.localhost", "double", split = TRUE),
    spec("maxWorkers.localhost.ignore", "character", split = TRUE),
    spec("fork.enable", "logical", na = TRUE),
    spec("supportsMulticore.disableOn", "character", split = TRUE),
    spec("supportsMulticore.unstable", "character"),
    psock("setup_strategy", "character"),
    psock("validate", "logical"),
    psock("connectTimeout", "double"),
    psock("timeout", "double"),
    psock("useXDR", "logical"),
    psock("socketOptions", "character"),
    psock("rshcmd", "character", split = TRUE),
    psock("rshopts", "character", split = TRUE),
    psock("tries", "integer"),
    psock("tries.delay", "double"),
    psock("rscript_label", "character"),
    psock("sessionInfo.pkgs", "logical"),
    psock("autoKill", "logical"),
    psock("master.localhost.hostname", "character"),
    psock("port.increment", "logical"),
    psock("calls", "logical"),
    psock("autoRestart", "integer"),
    psock("retries", "integer"),
    psock("rscript_call", "character"),
    spec("recvData.spin", "double"),
    spec("internals.disable", "character", split = TRUE)
  )
}

## "availableCores.min" -> "R_PARALLELLY_AVAILABLECORES_MIN"
option_envvar_name <- function(name) {
  paste0("R_PARALLELLY_", toupper(gsub(".", "_", name, fixed = TRUE)))
}

## Coerce the text of an env var to the mode of its option
coerce_option_value <- function(value, spec, envvar) {
  if (spec$split) {
    value <- trimws(strsplit(value, split = ",", fixed = TRUE)[[1]])
  } else {
    value <- trimws(value)
  }
  na_text <- value %in% c("NA", "NA_integer_", "NA_real_", "NA_character_")
  out <- switch(spec$mode,
    logical = as.logical(value),
    integer = suppressWarnings(as.integer(value)),
    double = suppressWarnings(as.numeric(value)),
    character = value
  )
  if (spec$mode == "character") out[na_text] <- NA_character_
  bad <- is.na(out) & !na_text
  if (any(bad) || (!spec$na && anyNA(out)) || length(out) == 0L) {
    stopf("Option", "Environment variable %s has an invalid value for option 'parallelly.%s' (expected %s%s): %s", envvar, spec$name, spec$mode, if (spec$na) " or NA" else "", sQuote(paste(value, collapse = ","), q = FALSE))
  }
  out
}

## Set an option from its env var, unless the option is already set
update_package_option <- function(spec) {
  name <- paste0("parallelly.", spec$name)
  if (!is.null(getOption(name, NULL))) return(invisible(FALSE))
  envvar <- option_envvar_name(spec$name)
  value <- getEnvVar2(envvar, default = NA_character_)
  if (is.na(value) || !nzchar(value)) return(invisible(FALSE))
  value <- coerce_option_value(value, spec, envvar)
  args <- list(value)
  names(args) <- name
  do.call(options, args)
  invisible(TRUE)
}

## Called at load time: map all R_PARALLELLY_* env vars to their options
update_package_options <- function() {
  for (spec in package_option_specs()) update_package_option(spec)
  invisible(NULL)
}

## Option 'parallelly.debug' from env var R_PARALLELLY_DEBUG
parallelly_debug_setup <- function() {
  if (!is.null(getOption("parallelly.debug", NULL))) return(invisible(FALSE))
  value <- Sys.getenv("R_PARALLELLY_DEBUG", "")
  if (!nzchar(value)) return(invisible(FALSE))
  debug <- as.logical(value)
  if (is.na(debug)) {
    ## A typo in a debug flag should not stop the package from loading
    warning(sprintf(
      "Ignoring environment variable R_PARALLELLY_DEBUG: expected TRUE or FALSE, got %s",
      sQuote(value, q = FALSE)), call. = FALSE)
    return(invisible(FALSE))
  }
  options(parallelly.debug = debug)
  invisible(TRUE)
}


## TRUE when running under 'R CMD check'.  Tests and examples run in
## child R processes that R CMD check starts with _R_CHECK_PACKAGE_NAME_
## set; the call-stack test covers code run by the check process itself.
inRCmdCheck <- function() {
  if (nzchar(Sys.getenv("_R_CHECK_PACKAGE_NAME_", ""))) return(TRUE)
  calls <- sys.calls()
  if (length(calls) == 0L) return(FALSE)
  heads <- vapply(calls, FUN = function(call) {
    paste(deparse(call[[1]], width.cutoff = 500L), collapse = "")
  }, FUN.VALUE = "")
  any(grepl("^tools:::?\\.(runPackageTests|createExdotR|check_packages)", heads))
}

## Under R CMD check, use long timeouts and record more about workers so
## that failures on check servers can be diagnosed, and pick random ports
## and core limits that do not collide with other checks.  Must be called
## before update_package_options() so the env vars reach the options.
apply_r_cmd_check_settings <- function(in_check = inRCmdCheck()) {
  if (!isTRUE(in_check)) return(invisible(FALSE))
  nice <- Sys.getenv("R_PARALLELLY_R_CMD_CHECK_NICE", "TRUE")
  if (is_false_like(as.logical(nice))) return(invisible(FALSE))
  Sys.setenv(
    R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT = "120",
    R_PARALLELLY_MAKENODEPSOCK_TIMEOUT = "120",
    R_PARALLELLY_MAKENODEPSOCK_SESSIONINFO_PKGS = "TRUE",
    R_PARALLELLY_MAKENODEPSOCK_AUTOKILL = "TRUE",
    R_PARALLELLY_MAKENODEPSOCK_RSCRIPT_LABEL = "TRUE"
  )
  if (!nzchar(Sys.getenv("R_PARALLELLY_RANDOM_PORTS", ""))) {
    Sys.setenv(R_PARALLELLY_RANDOM_PORTS = "20000:39999")
  }
  if (!nzchar(Sys.getenv("_R_CHECK_LIMIT_CORES_", ""))) {
    Sys.setenv("_R_CHECK_LIMIT_CORES_" = "TRUE")
  }
  invisible(TRUE)
}
