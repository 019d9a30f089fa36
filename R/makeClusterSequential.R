#' Create a cluster whose one node runs in the current R session
#'
#' `makeClusterSequential()` returns a cluster of one node that evaluates what the
#' \pkg{parallel} functions send it right here, in this R process, one call after the other.
#' It is useful to test code written for a cluster without starting workers, and with
#' `future::plan(future::cluster, workers = makeClusterSequential())`. Each call is evaluated
#' in the node's own environment, whose parent is the global environment, so assignments made
#' there (by `clusterEvalQ()`, and the variables `clusterExport()` exports) do not touch the
#' global environment. After
#' [parallel::stopCluster()] the node refuses further calls with an error.
#'
#' Unlike the reference package, which defines it for R (>= 4.4.0) only, it works on every
#' R version this package supports. `parallelly::SEQ` names it as a cluster type (see
#' [clusterTypes]).
#'
#' @return A cluster of class `c("sequential_cluster", "cluster")` with one node of class
#' `sequential_node`.
#' @examples
#' cl <- makeClusterSequential()
#' cl
#' parallel::parLapply(cl, 1:3, sqrt)
#' parallel::clusterEvalQ(cl, Sys.getpid()) # this R session's PID
#' parallel::stopCluster(cl)
#' @seealso [makeClusterPSOCK()] for workers in R processes of their own.
#' @export
makeClusterSequential <- function() {
  structure(list(new_sequential_node()), class = c("sequential_cluster", "cluster"))
}

# The node's environment holds the evaluation environment of its calls and the one result
# waiting to be received (parallel sends a call, then receives its result).
new_sequential_node <- function() {
  state <- new.env(parent = emptyenv())
  state$envir <- new.env(parent = globalenv())
  state$valid <- TRUE
  state$result <- NULL
  structure(list(state = state), class = "sequential_node")
}

#' @export
print.sequential_cluster <- function(x, ...) {
  cat(sprintf("A %s cluster with %d node\n", sQuote(class(x)[1L]), length(x)))
  invisible(x)
}

#' @export
print.sequential_node <- function(x, ...) {
  cat(sprintf("A %s node\n", sQuote(class(x)[1L])))
  invisible(x)
}

# Registered at load with our other transport methods (R/nodeTraffic.R).
sendData.sequential_node <- function(node, data) {
  state <- .subset2(node, "state")
  if (!isTRUE(state$valid)) {
    stopf("Argument", "This 'sequential_node' was stopped (its cluster was stopped with stopCluster()); create a new one with makeClusterSequential()")
  }
  type <- data$type
  if (identical(type, "DONE")) {
    state$valid <- FALSE
    state$result <- NULL
    return(invisible(NULL))
  }
  if (!identical(type, "EXEC")) {
    stopf("Argument", "A 'sequential_node' handles messages of type 'EXEC' and 'DONE' only, not %s", sQuote(type, q = FALSE))
  }
  state$result <- run_sequential_call(data$data, state$envir)
  invisible(NULL)
}

# One call as parallel's worker loop would run it: errors come back as values of class
# "snow-try-error"; calls meant for the global environment run in the node's own. R 4.2's
# clusterEvalQ() passes it to eval() as `env =` (partial matching), later R as `envir =`.
run_sequential_call <- function(call, envir) {
  args <- call$args
  fun <- call$fun
  # clusterExport() sends a helper that assigns in the global environment: assign in the
  # node's instead (as the reference does since 1.46.1).
  if (identical(fun, get0("gets", envir = environment(parallel::clusterExport), inherits = FALSE))) {
    fun <- function(n, v) {
      assign(n, v, envir = envir)
      NULL
    }
  }
  nms <- names(args) %||% character(length(args))
  for (i in which(nzchar(nms) & startsWith("envir", nms))) {
    if (identical(args[[i]], globalenv())) args[[i]] <- envir
  }
  success <- TRUE
  t0 <- proc.time()
  value <- tryCatch(do.call(fun, args, quote = TRUE, envir = envir), error = function(e) {
    success <<- FALSE
    structure(conditionMessage(e), class = c("snow-try-error", "try-error"))
  })
  list(type = "VALUE", value = value, success = success, time = proc.time() - t0, tag = call$tag)
}

# Registered at load with our other transport methods (R/nodeTraffic.R).
recvData.sequential_node <- function(node) {
  state <- .subset2(node, "state")
  result <- state$result
  if (is.null(result)) {
    stopf("Argument", "Nothing to receive from this 'sequential_node': no call was sent to it")
  }
  state$result <- NULL
  result
}

# clusterApplyLB() and friends receive from whichever node finishes first: the only one.
# Registered at load with our other transport methods (R/nodeTraffic.R).
recvOneData.sequential_cluster <- function(cl) {
  list(node = 1L, value = recvData.sequential_node(cl[[1L]]))
}
