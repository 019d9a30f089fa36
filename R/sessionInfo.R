# Session information collected from each worker when `validate = TRUE`. The function that
# runs on the worker lives in the utils namespace, so serializing it does not require this
# package on the worker (and does not load it there).

worker_session_info <- function(pkgs = FALSE) {
  libs <- .libPaths()
  list(
    r = c(R.version, os.type = .Platform$OS.type),
    system = as.list(Sys.info()),
    l10n = l10n_info(),
    extSoftVersion = extSoftVersion(),
    libs = libs,
    pkgs = if (isTRUE(pkgs)) {
      structure(lapply(libs, function(lib) {
        pkgs <- installed.packages(lib.loc = lib, noCache = TRUE)[, c("Package", "Version"), drop = FALSE]
        paste(pkgs[, 1L], pkgs[, 2L], sep = "_")
      }), names = libs)
    },
    pwd = getwd(),
    tempdir = tempdir(),
    process = list(pid = Sys.getpid())
  )
}
environment(worker_session_info) <- asNamespace("utils")

# Query every node of `cl` that has no session info yet, all at once.
add_cluster_session_info <- function(cl) {
  todo <- which(vapply(cl, function(node) !is.null(node) && is.null(node$session_info), logical(1)))
  if (length(todo) == 0L) return(cl)
  pkgs <- isTRUE(getOption2("parallelly.makeNodePSOCK.sessionInfo.pkgs", FALSE))
  infos <- parallel::clusterCall(cl[todo], without_bytecode(worker_session_info, asNamespace("utils")), pkgs = pkgs)
  for (k in seq_along(todo)) {
    node <- cl[[todo[k]]]
    node_session_info(node) <- infos[[k]]
    cl[[todo[k]]] <- node
  }
  cl
}

# A copy of `fun` with environment `env` and without its byte code: a byte-compiled closure
# makes the worker load the compiler package to unserialize it, which costs ~50 ms a call.
without_bytecode <- function(fun, env) {
  environment(fun) <- env
  fun
}
