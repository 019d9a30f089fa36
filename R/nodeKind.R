# Node kinds: how a node's worker is launched, watched, signalled, stopped and cleaned up.
# Each kind is one file, R/kind-<name>.R, that defines a list `node_kind_<name>`; the
# operations (isNodeAlive(), killNode(), stopCluster(), summary(), print(), setup) find a
# node's kind by the name recorded in the node and never look at how the worker runs.
# A new kind of node is one new file. Forking is not a kind's own business: with
# setup_strategy = "fork" (and "auto", where the kind's fork_pays() says so) any kind's
# launcher starts a fork server on the host (one worker of that kind), and the host's
# workers become nodes of kind "fork" (R/kind-fork.R), reached as the host's kind reaches
# them (locally, over SSH) or, for a host reached only through the server (a Slurm step, a
# Grid Engine task), through the server.
#
# Fields of a kind (ids: node identities, see node_identity(); all of one group):
#   name, priority      a kind claims options before kinds of higher priority
#   claims(opts)        whether this kind launches workers for these resolved options
#   launcher(opts)      the setup launcher that connect_workers() drives: launch(),
#                       check(), start_time(), connected() (see R/launchers.R); it names
#                       its kind in field `kind`. It has no stop or output of its own: a
#                       failed setup stops its launched workers with the kind's stop()
#                       (grace 0), and explains their deaths with the kind's last_output(),
#                       on identities made by launch_identity() (no node yet: `node` NULL)
#   answers_locally     probes are system calls (print() may probe; it never uses the network)
#   group(id)           nodes of one group (a host, a connection) are asked together
#   probe(ids, timeout)            TRUE/FALSE/NA per node, or a stage
#   signal(ids, signal, timeout)   TRUE when sent, FALSE when not running, NA; or a stage
#   stop(ids, background, grace = 5)  after DONE (or a stage): wait up to `grace` seconds for
#                                  exits, terminate the rest, remove logs, release what the
#                                  workers held; grace 0 for workers never told DONE
#   exit_cause(ids)                how each worker ended, NA when unknown
#   usage(ids, timeout)            list(rss, cpu, uptime), NA where unknown; or a stage
#   last_output(id, n)             the last lines a worker wrote
#   after_kill(id)                 remove what a killed worker left behind (its R tempdir)
#   describe(id)                   optional: a short note for print(), e.g. a Slurm step
#   connect(opts, timeout)         optional: submit the connection its launcher needs, a
#                                  request polled before launcher() is asked (the built-in
#                                  SSH client's, R/setupHosts.R)
#   adopts(local)                  optional: TRUE when this kind takes the local (or remote)
#                                  nodes that record no kind of their own (adopting_kind())
#   batch(opts)                    optional: which workers start in one setup call (default:
#                                  those of one host)
#   stop_before_done(ids)          optional: TRUE when stop(ids, background = TRUE) only hands
#                                  the workers to a thread, so it may run before they are
#                                  told to finish (default FALSE)
#   fork_pays(n)                   optional: with setup_strategy = "auto", whether a new fork
#                                  server for `n` workers of one setup batch on a remote host
#                                  pays (default TRUE: the server stays for later setups and
#                                  clones); FALSE launches them plain. A host whose server
#                                  runs already forks from it either way.
# Optional fields of a kind that a user selects by an `rshcmd` keyword (a scheduler's
# launcher, such as "<srun>"); option resolution (R/makeNodePSOCK.R) asks the kind and never
# names it:
#   rshcmd                         the keyword, e.g. "<srun>"
#   job_variable                   an environment variable set inside a job of the kind's
#                                  scheduler: rshcmd = "<hpc>" picks the kind whose is set
#   worker_is_local(worker)        TRUE for the node the master runs on (its workers are local)
#   reachability(revtunnel, master, dryrun)  checks a remote worker's options (an error for
#                                  what cannot work, such as a reverse tunnel) and returns the
#                                  master address (`master` if given)
#   launch_line(opts)              the launcher's command line, shown by dryrun/manual
# A group whose answer cannot be had (a host that does not answer) raises an error: the
# operation then warns and reports NA for its nodes.
#
# A stage is function(left) that returns the answer or a further stage; `left()` gives
# the seconds left of the caller's timeout (never less than 0.05). Stages let every group be
# asked at once: the first stage of each group runs, then the second of each, and so on. A
# stage that polls and is not ready yet waits a short slice (~20 ms) before returning the
# next one, so that the rounds do not spin.

# The fields every kind has.
kind_interface_fields <- c("name", "priority", "claims", "launcher", "answers_locally", "group", "probe",
                      "signal", "stop", "exit_cause", "usage", "last_output", "after_kill")

# Every kind, in the order they claim options.
node_kinds <- function() {
  kinds <- .package$node_kinds
  if (is.null(kinds)) {
    # The kinds' files and their order were found when the package was installed.
    kinds <- mget(paste0("node_kind_", names(kind_claim_order)), envir = environment(node_kinds))
    names(kinds) <- names(kind_claim_order)
    .package$node_kinds <- kinds
  }
  kinds
}

# Add (or replace) a kind at run time, as if it had its own file; NULL removes it again.
# For kinds that live outside the package's sources (the test suite's, say).
register_node_kind <- function(kind, name = kind$name) {
  kinds <- node_kinds()
  kinds[[name]] <- kind
  if (!is.null(kind)) kinds <- kinds[order(vapply(kinds, `[[`, numeric(1), "priority"))]
  .package$node_kinds <- kinds
  invisible()
}

node_kind <- function(name) {
  kinds <- .package$node_kinds
  kind <- if (!is.null(kinds)) {
    kinds[[name]]
  } else if (is.character(name) && length(name) == 1L && name %in% names(kind_claim_order)) {
    get0(paste0("node_kind_", name), envir = environment(node_kind), inherits = FALSE)
  }
  if (is.null(kind)) stopf("Argument", "Unknown node kind '%s'", name)
  kind
}

# What choosing a kind asks of each (name, priority, claims(), rshcmd), in the order they
# claim options. Made when the package is installed: R sources its files in alphabetical
# order, so every R/kind-<name>.R comes before this file. Choosing the kind of a launch then
# fetches that kind alone from the lazy-load database (all kinds: ~130 KB, ~2-3 ms of a
# session's first setup). Kinds registered at run time (register_node_kind()) are chosen
# from the full list.
kind_claim_order <- local({
  ns <- parent.env(environment())
  kinds <- mget(ls(ns, pattern = "^node_kind_[a-z]+$"), envir = ns)
  kinds <- Filter(is.list, kinds)
  kinds <- kinds[order(vapply(kinds, `[[`, numeric(1), "priority"))]
  # node_kinds() and node_kind() fetch a kind by its name: `node_kind_<name>`.
  stopifnot(identical(sub("^node_kind_", "", names(kinds)), unname(vapply(kinds, `[[`, character(1), "name"))))
  names(kinds) <- sub("^node_kind_", "", names(kinds))
  lapply(kinds, function(k) k[intersect(c("name", "priority", "claims", "rshcmd"), names(k))])
})

kind_selectors <- function() {
  kinds <- .package$node_kinds
  if (is.null(kinds)) kind_claim_order else kinds
}

# The kind of a node that records none (made by other code, or kept from an older version):
# the kind whose `adopts(local)` takes such local, or remote, nodes.
adopting_kind <- function(local) {
  for (kind in node_kinds()) if (is.function(kind$adopts) && isTRUE(kind$adopts(local))) return(kind$name)
  stopf("Argument", "No node kind adopts a %s node without a recorded kind", if (local) "local" else "remote")
}

# The kind selected by the rshcmd keyword `rshcmd` (such as "<srun>"), or NULL.
kind_for_rshcmd <- function(rshcmd) {
  if (!is.character(rshcmd) || length(rshcmd) != 1L) return(NULL)
  for (kind in kind_selectors()) if (identical(kind$rshcmd, rshcmd)) return(node_kind(kind$name))
  NULL
}

# rshcmd = "<hpc>" (as in the reference): the keyword of the kind whose scheduler runs this
# R session (its `job_variable` is set; "<srun>" in a Slurm job, "<qrsh>" in a Grid Engine
# job). Further elements, as in c("<hpc>", "<ssh>"), are used outside any job; without them
# that is an error, unless this is a dry run (which then shows the first kind's launch).
resolve_rshcmd_keyword <- function(rshcmd, dryrun = FALSE) {
  if (!is.character(rshcmd) || !identical(rshcmd[1L], "<hpc>")) return(rshcmd)
  kinds <- Filter(function(k) is.character(k$job_variable) && is.character(k$rshcmd), node_kinds())
  for (kind in kinds) if (nzchar(Sys.getenv(kind$job_variable))) return(kind$rshcmd)
  if (length(rshcmd) > 1L) return(rshcmd[-1L])
  if (dryrun && length(kinds) > 0L) return(kinds[[1L]]$rshcmd)
  vars <- vapply(kinds, function(k) sprintf("%s (%s)", k$job_variable, k$rshcmd), character(1))
  stop_arg("rshcmd", "is \"<hpc>\", which uses the launcher of the job scheduler this R session runs in, but none of %s is set: run R inside a job, or give a fallback, e.g. rshcmd = c(\"<hpc>\", \"<ssh>\")",
           paste(vars, collapse = ", "))
}

# The kind that launches workers for `opts`.
kind_for_options <- function(opts) {
  for (kind in kind_selectors()) if (isTRUE(kind$claims(opts))) return(node_kind(kind$name))
  stopf("Argument", "No node kind can launch a worker on '%s'", as.character(opts$worker),
        fields = list(host = as.character(opts$worker)))
}

# Split `nodes` into groups of one kind and group: list(kind, idx, ids) each.
node_groups <- function(ids) {
  if (length(ids) == 0L) return(list())
  labels <- vapply(ids, function(id) paste(id$kind, node_kind(id$kind)$group(id), sep = "\r"), character(1))
  lapply(unname(split(seq_along(ids), factor(labels, levels = unique(labels)))), function(idx) {
    list(kind = node_kind(ids[[idx[1L]]]$kind), idx = idx, ids = ids[idx])
  })
}

# Call `method` of each group's kind with the group's ids and the arguments `args`; run the
# stages it returns until all are answered or `timeout` seconds have passed. A list per
# group: idx, host and value (the answer, or the error that stopped it).
ask_groups <- function(ids, method, args = list(), timeout = Inf) {
  deadline <- Sys.time() + timeout
  left <- function() max(as.double(deadline - Sys.time(), units = "secs"), 0.05)
  answers <- lapply(node_groups(ids), function(g) {
    value <- tryCatch(do.call(g$kind[[method]], c(list(g$ids), args)), error = function(e) e)
    list(idx = g$idx, host = g$ids[[1L]]$host, value = value)
  })
  values <- run_stages(lapply(answers, `[[`, "value"), left)
  for (k in seq_along(answers)) answers[[k]]["value"] <- list(values[[k]])
  answers
}

# Run `stages` (values, some of them stages) round by round until none is a stage; `left()`
# gives each the seconds left. The values, or the errors that stopped them.
run_stages <- function(stages, left = function() Inf) {
  repeat {
    pending <- which(vapply(stages, is.function, logical(1)))
    if (length(pending) == 0L) return(stages)
    for (k in pending) stages[k] <- list(tryCatch(stages[[k]](left), error = function(e) e))
  }
}

# Stop processes: SIGTERM, then SIGKILL for those still alive after `grace` seconds.
# `alive()` says, per process, whether it still runs (TRUE/FALSE/NA); `send(which, signal)`
# signals the processes `which` (indices). TRUE once all are gone.
terminate_until_gone <- function(alive, send, n, grace = 1, kill_wait = 2, interval = 0.02) {
  if (n == 0L) return(TRUE)
  running <- function() which(alive() %in% TRUE)
  k <- running()
  if (length(k) == 0L) return(TRUE)
  send(k, tools::SIGTERM)
  if (wait_until(function() length(running()) == 0L, timeout = grace, interval = interval)) return(TRUE)
  k <- running()
  if (length(k) > 0L) send(k, tools::SIGKILL)
  wait_until(function() length(running()) == 0L, timeout = kill_wait, interval = interval)
}

# Integer PIDs and numeric start times of `ids`, for the backend's vectorised calls.
ids_pids <- function(ids) vapply(ids, function(id) as.integer(id$pid), integer(1))
ids_starts <- function(ids) vapply(ids, function(id) as.numeric(id$start_time), numeric(1))
ids_launcher_pids <- function(ids) {
  vapply(ids, function(id) if (is.numeric(id$launcher_pid)) as.integer(id$launcher_pid) else NA_integer_, integer(1))
}

ids_logs <- function(ids) {
  logs <- unlist(lapply(ids, function(id) if (is.character(id$log)) id$log))
  logs[!is.na(logs) & nzchar(logs)]
}

# What a kind does not know.
unknown_usage <- function(ids) {
  n <- length(ids)
  list(rss = rep(NA_real_, n), cpu = rep(NA_real_, n), uptime = rep(NA_real_, n))
}
