# Package load and unload. At unload and at R exit, every worker process this session
# started and that still runs is stopped, so none is left behind.

.package <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  init_package_state()
  register_parallel_methods()
  register_cluster_types()
  apply_r_cmd_check_settings()  # R CMD check: sets R_PARALLELLY_* variables first
  update_package_options()      # R_PARALLELLY_* variables -> parallelly.* options
  parallelly_debug_setup()      # R_PARALLELLY_DEBUG -> option parallelly.debug
  check_r_internals_at_load()   # R/internals.R: which R internals this R lets us use
  register_transport_methods()  # parallel's unexported generics, once checked
  backend_task_wire_functions(base::eval, base::lapply)  # tasks calling them carry their names
  # An environment whose finalizer runs when R exits.
  .package$exit_hook <- new.env(parent = emptyenv())
  # A forked worker inherits this hook: it must not act there (see R/forkServer.R).
  reg.finalizer(.package$exit_hook, function(e) if (!isTRUE(.package$forked_child)) stop_all_children(), onexit = TRUE)
}

.onUnload <- function(libpath) {
  # A forked worker unloads us right after the fork; it has no children of ours to stop,
  # and the library stays mapped (the server's frames below it still point into it).
  if (isTRUE(.package$forked_child)) return(invisible())
  stop_all_children()
  library.dynam.unload("parallelly", libpath)
}

stop_all_children <- function() {
  pids <- tryCatch(backend_running_children(), error = function(e) integer(0))
  if (length(pids) > 0L) try(terminate_processes(pids, grace = 0.5), silent = TRUE)
  # Reaper threads of stopCluster() (R/cluster.R): their children are gone now; none may
  # outlive the library.
  try(backend_reapers_shutdown(timeout = 5), silent = TRUE)
  try(backend_ssh_close_all(), silent = TRUE)
  invisible(NULL)
}
