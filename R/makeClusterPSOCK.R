#' Create a PSOCK cluster of R workers
#'
#' A drop-in for [parallel::makePSOCKcluster()] that returns a `RichSOCKcluster`: every
#' function of `parallel` accepts it, and its nodes can be checked with [isNodeAlive()],
#' signalled with [killNode()] and relaunched with [cloneNode()].
#'
#' @details
#' The workers of all hosts (and the local ones) start at once: every host is connected to,
#' gets its fork server or its workers launched, and the workers connect back as they come,
#' within the `connectTimeout` of their host counted from the start of the call. If a
#' host fails, every worker of the call is stopped; the error names each host that failed and
#' why (with several, a `PSOCKConnectionError` whose field `host` lists them and
#' whose field `errors` holds each host's error). Nodes with `setup_strategy =
#' "sequential"` start one after another, after the others.
#'
#' @param workers The number of local workers, or a character vector of hostnames.
#' `I(n)` skips the check against overusing the local CPU cores.
#' @param makeNode The function that creates a node.
#' @param port The port the master listens on: a number, a vector to choose from,
#' `"auto"` (`R_PARALLEL_PORT`, else random) or `"random"` (`R_PARALLELLY_RANDOM_PORTS`,
#' default 11000:11999).
#' @param user The user name for remote workers, one for all or one per worker.
#' @param \dots Arguments passed to `makeNode`, see [makeNodePSOCK()].
#' @param autoStop If TRUE, the cluster is stopped when it is garbage collected.
#' @param tries,delay How many times, and how many seconds apart, a node that failed to
#' connect is launched again (sequential setup).
#' @param validate If TRUE, each worker's session information (including its PID) is
#' collected after setup.
#' @param verbose Print debug output.
#' @return A cluster of class `c("RichSOCKcluster", "SOCKcluster", "cluster")`.
#' @examples
#' cl <- makeClusterPSOCK(2)
#' print(cl)
#' parallel::parLapply(cl, 1:4, sqrt)
#' parallel::stopCluster(cl)
#' @export
makeClusterPSOCK <- function(workers, makeNode = makeNodePSOCK, port = c("auto", "random"),
                             user = NULL, ..., autoStop = FALSE,
                             tries = getOption2("parallelly.makeNodePSOCK.tries", 3L),
                             delay = getOption2("parallelly.makeNodePSOCK.tries.delay", 15.0),
                             validate = getOption2("parallelly.makeNodePSOCK.validate", TRUE),
                             verbose = isTRUE(getOption2("parallelly.debug", FALSE))) {
  guard <- NULL
  if (is.numeric(workers)) {
    if (length(workers) != 1L) {
      stop_arg("workers", "must be a single number when numeric: %s", deparse1(unclass(workers)))
    }
    if (is.na(workers) || workers < 1) {
      stop_arg("workers", "must be one or greater: %s", deparse1(unclass(workers)))
    }
    if (!is.finite(workers) || workers != round(workers)) {
      stop_arg("workers", "must be a whole number: %s", deparse1(unclass(workers)))
    }
    # The overuse guard asks availableCores(), which runs programs (detectCores()'s grep,
    # nproc: ~15-20 ms before the first launch). For no more workers than this process's
    # usable cores (the case where it only rarely objects) it runs while they start up
    # (connect_hosts()), and an error of it stops them again.
    if (!inherits(workers, "AsIs")) {
      if (workers <= backend_usable_cores()) {
        count <- workers
        guard <- function() check_local_worker_count(count)
      } else {
        check_local_worker_count(workers)
      }
    }
    workers <- rep(getOption2("parallelly.localhost.hostname", "localhost"), times = workers)
  }
  if (!is.character(workers) || length(workers) == 0L || anyNA(workers) || any(!nzchar(workers))) {
    stop_arg("workers", "must be a number of workers or a character vector of hostnames: %s",
             deparse1(workers))
  }
  n <- length(workers)
  # The guard runs once: while the first workers start, else before the function returns.
  run_guard <- function() {
    g <- guard
    guard <<- NULL
    if (is.function(g)) g()
  }
  user <- check_user(user, n)
  tries <- check_count(tries, "tries", min = 1L)
  delay <- check_seconds(delay, "delay")
  validate <- check_flag(validate, "validate")
  autoStop <- check_flag(autoStop, "autoStop")

  if (identical(makeNode, makeNodePSOCK)) check_connection_budget(n, validate)
  port <- resolve_port(port)

  options <- node_options_for(workers, makeNode, port, user, ..., verbose = verbose)
  for (o in options) {
    if (!inherits(o, "makeNodePSOCKOptions")) {
      stop_arg("makeNode", "must return 'makeNodePSOCKOptions' objects when called with action = \"options\"")
    }
  }
  if (affected_by_bug18119()) {
    options <- lapply(options, function(o) { o$setup_strategy <- "sequential"; o })
  }
  cl <- structure(vector("list", n), class = c("RichSOCKcluster", "SOCKcluster", "cluster"))
  done <- FALSE
  on.exit(if (!done) stop_nodes(cl))
  options <- plain_where_forking_does_not_pay(options)
  batches <- setup_batches(options)
  # Now that the hosts are known: their fork servers need connections too (before any launch).
  if (identical(makeNode, makeNodePSOCK)) check_connection_budget(n, validate, new_fork_servers(options, batches))
  sequential <- vapply(batches, function(b) length(b) == 1L && options[[b]]$setup_strategy == "sequential", logical(1))
  # All hosts at once, within one connectTimeout (R/setupHosts.R); then the sequential nodes.
  together <- batches[!sequential]
  if (length(together) > 0L) {
    nodes <- connect_hosts(lapply(together, function(b) options[b]), verbose = verbose, while_starting = run_guard)
    for (k in seq_along(together)) cl[together[[k]]] <- nodes[[k]]
  }
  run_guard()
  for (batch in batches[sequential]) {
    node <- launch_with_tries(options[[batch]], tries = tries, delay = delay, verbose = verbose)
    if (!is.null(node)) cl[[batch]] <- node
  }
  if (validate) {
    nonnull <- !vapply(cl, is.null, logical(1))
    if (any(nonnull)) cl[nonnull] <- add_cluster_session_info(cl[nonnull])
  }
  if (autoStop) cl <- autoStopCluster(cl)
  done <- TRUE
  cl
}

# The options of every node, from makeNode(action = "options"). Our makeNodePSOCK() resolves
# the same way for every worker of one host and user (only the rank differs), at ~1.7 ms a
# node: it is asked once per host and user and the answer copied for the other ranks (128
# workers: ~0.2 s less before the first launch). A log file of its own per node
# (rshlogfile = TRUE) and other makeNode functions are asked for every node.
node_options_for <- function(workers, makeNode, port, user, ..., verbose) {
  ours <- identical(makeNode, makeNodePSOCK)
  resolved <- list()
  options <- vector("list", length(workers))
  for (i in seq_along(workers)) {
    key <- paste(workers[[i]], paste(user[[i]], collapse = ","), sep = "\r")
    o <- if (ours) resolved[[key]]
    if (is.null(o)) {
      o <- makeNode(workers[[i]], port = port, user = user[[i]], ..., rank = i, action = "options", verbose = verbose)
      if (ours && !isTRUE(o$arguments$rshlogfile)) resolved[[key]] <- o
    } else {
      o$rank <- i
      o$arguments$rank <- i
    }
    options[[i]] <- o
  }
  options
}

# Which nodes start together: the parallel ones grouped by host (all local workers at once,
# all workers of a remote host at once over its SSH connection); sequential ones one by one.
# The workers of one host start together; a kind may group them otherwise (all of a Slurm
# job's steps, whatever their nodes, say) with its optional `batch()`.
setup_batch_key <- function(o) {
  if (isTRUE(attr(o$worker, "localhost"))) return("")
  kind <- kind_for_options(o)
  if (is.function(kind$batch)) return(paste0(kind$name, ":", kind$batch(o)))
  paste(o$ssh$user, as.character(o$worker), o$ssh$port)
}

# With setup_strategy = "auto", the workers of a remote host whose kind says that a new fork
# server does not pay for so few (its fork_pays(), R/nodeKind.R) start plain; decided before
# the workers are batched, as a kind may batch the plain workers of many hosts together (the
# single-worker nodes of a Slurm job: one batch, one poll of the controller, instead of one
# batch each). A host whose server runs already keeps forking from it.
plain_where_forking_does_not_pay <- function(options) {
  auto <- which(vapply(options, function(o) {
    isTRUE(o$setup_auto) && identical(o$setup_strategy, "fork") && !isTRUE(attr(o$worker, "localhost"))
  }, logical(1)))
  if (length(auto) == 0L) return(options)
  running <- vapply(mget(ls(.package$fork_servers), envir = .package$fork_servers), function(s) s$host, character(1))
  hosts <- vapply(options[auto], function(o) as.character(o$worker), character(1))
  counts <- table(hosts)
  for (i in seq_along(auto)) {
    pays <- kind_for_options(options[[auto[i]]])$fork_pays
    if (is.function(pays) && !(hosts[i] %in% running) && !isTRUE(pays(counts[[hosts[i]]]))) {
      options[[auto[i]]]$setup_strategy <- "parallel"
    }
  }
  options
}

setup_batches <- function(options) {
  parallel <- vapply(options, function(o) o$setup_strategy %in% c("parallel", "fork"), logical(1))
  host <- vapply(options, setup_batch_key, character(1))
  batches <- c(split(which(parallel), host[parallel]), as.list(which(!parallel)))
  batches[order(vapply(batches, min, integer(1)))]
}

# Launch one node; connection failures are tried again `tries` times, `delay` apart. A
# worker that could not be started or that exited (a missing Rscript, a refused login, an
# error in rscript_startup) fails at once: trying again would fail the same way.
launch_with_tries <- function(options, tries, delay, verbose) {
  for (attempt in seq_len(tries)) {
    node <- tryCatch(launchNodePSOCK(options, verbose = verbose), PSOCKConnectionError = function(e) e)
    if (!inherits(node, "PSOCKConnectionError")) return(node)
    if (inherits(node, "parallellyLaunchError")) stop(node)
    if (attempt < tries && delay > 0) Sys.sleep(delay)
  }
  node$message <- sprintf("%s\n * Number of attempts: %d (%gs delay)", conditionMessage(node), tries, delay)
  stop(node)
}

check_count <- function(x, name, min = 0L) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x < min || x != round(x)) {
    stop_arg(name, "must be a single whole number >= %d: %s", min, deparse1(x))
  }
  as.integer(x)
}

check_user <- function(user, n) {
  if (is.null(user)) return(vector("list", n))
  if (!is.character(user) || !(length(user) %in% c(1L, n)) || anyNA(user)) {
    stop_arg("user", "must be a character vector of length 1 or %d (one per worker): %s", n, deparse1(user))
  }
  user <- rep_len(user, n)
  lapply(user, function(u) if (identical(u, "*")) NULL else u)
}

resolve_port <- function(port) {
  if (length(port) == 0L) stop_arg("port", "must be of length one or more: 0")
  if (is.numeric(port) && (anyNA(port) || any(port < 0 | port > 65535 | port != round(port)))) {
    stop_arg("port", "must hold port numbers in 0..65535, or be \"auto\" or \"random\": %s",
             paste(port, collapse = ", "))
  }
  chosen <- freePort(port)
  if (is.na(chosen)) {
    stop_arg("port", "specifies non-available port(s): %s", paste(port, collapse = ", "))
  }
  chosen
}

# Each node needs one R connection, and so does each host's fork server while it runs (one
# per host that has none yet): fail early rather than midway. Called twice: for the nodes
# alone before their options are resolved, and with the servers once the hosts are known.
check_connection_budget <- function(n, validate, servers = 0L) {
  free <- freeConnections() - as.integer(validate)
  if (n + servers > free) {
    each <- if (servers > 0L) {
      sprintf("Each node needs one connection, and so does the fork server of each of %d hosts (%d in all; setup_strategy = \"parallel\" starts none)",
              servers, n + servers)
    } else "Each node needs one connection"
    stopf("Argument",
      paste("Cannot create %d parallel PSOCK nodes. %s, but there are only %d connections left out of the maximum %d available on this R installation.",
            "To increase this limit in R (>= 4.4.0), use command-line option '--max-connections=N' when launching R"),
      n, each, free, availableConnections(), fields = list(argument = "workers"))
  }
}

# How many fork servers a setup of `batches` (indices into `options`) starts: one per host
# with setup_strategy = "fork" that has none running (R/forkServer.R), none for a few local
# workers that start faster plain, nor where the host's kind says a server does not pay
# ("auto"). A host whose server turns out unable to fork costs its connection only until
# its workers are launched plain.
new_fork_servers <- function(options, batches) {
  running <- vapply(mget(ls(.package$fork_servers), envir = .package$fork_servers), function(s) s$host, character(1))
  sum(vapply(batches, function(b) {
    first <- options[[b[1L]]]
    if (!identical(first$setup_strategy, "fork")) return(0L)
    if (isTRUE(attr(first$worker, "localhost"))) {
      key <- fork_server_key(first, "localhost")
      return(as.integer(fork_server_pays(options[b]) && !exists(key, envir = .package$fork_servers, inherits = FALSE)))
    }
    as.integer(!(as.character(first$worker) %in% running) && fork_server_pays(options[b]))
  }, integer(1)))
}

# Guard against overloading the local machine: warn above the soft limit, fail above the
# hard one (defaults 100% and 300% of availableCores()); I(n) bypasses the guard.
check_local_worker_count <- function(workers) {
  if (inherits(workers, "AsIs")) return(invisible())
  limits <- getOption2("parallelly.maxWorkers.localhost", c(1.0, 3.0))
  if (!is.numeric(limits) || length(limits) < 1L) return(invisible())
  limits <- rep_len(limits, 2L)
  ignore <- getOption2("parallelly.maxWorkers.localhost.ignore", "_R_CHECK_LIMIT_CORES_")
  methods <- setdiff(eval(formals(availableCores)$methods), ignore)
  ncores <- availableCores(methods = methods)
  rho <- as.numeric(workers) / ncores
  where <- sprintf("per '%s'", names(ncores)[1L])
  if (is.finite(limits[2L]) && rho > limits[2L]) {
    stopf("Argument",
      "Attempting to set up %d localhost parallel workers with only %d CPU cores available for this R process (%s), which could result in a %.0f%% load. The hard limit is set to %.0f%%. Overusing the CPUs has negative impact on the current R process, but also on all other processes of yours and others running on the same machine. See help(\"parallelly.maxWorkers.localhost\", package = \"parallelly\") for further explanations and how to override the hard limit that triggered this error (or use workers = I(%d))",
      as.integer(workers), as.integer(ncores), where, 100 * rho, 100 * limits[2L], as.integer(workers),
      fields = list(argument = "workers"))
  }
  if (is.finite(limits[1L]) && rho > limits[1L]) {
    warning(sprintf(
      "Careful, you are setting up %d localhost parallel workers with only %d CPU cores available for this R process (%s), which could result in a %.0f%% load. The soft limit is set to %.0f%%. Overusing the CPUs has negative impact on the current R process, but also on all other processes of yours and others running on the same machine. See help(\"parallelly.maxWorkers.localhost\", package = \"parallelly\") for further explanations and how to override the soft limit that triggered this warning",
      as.integer(workers), as.integer(ncores), where, 100 * rho, 100 * limits[1L]), call. = FALSE)
  }
  invisible()
}
