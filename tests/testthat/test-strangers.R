# Only our workers join: a process that connects to the master's port first is not taken
# for a worker; a connection becomes a node only after presenting its worker's token.

test_that("a stranger connecting first is not taken for a worker", {
  port <- freePort("random")
  # A stranger that keeps connecting to the master's port during setup; one connection
  # answers the handshake with a made-up reply, others say nothing.
  stranger <- parallel::mcparallel({
    deadline <- Sys.time() + 10
    held <- list()
    while (Sys.time() < deadline) {
      con <- tryCatch(suppressWarnings(socketConnection("127.0.0.1", port, blocking = TRUE, open = "a+b", timeout = 1)),
                      error = function(e) NULL)
      if (!is.null(con)) {
        held[[length(held) + 1L]] <- con
        if (length(held) == 1L) {
          msg <- tryCatch(unserialize(con), error = function(e) NULL)
          try(serialize(list(type = "VALUE", value = list(pid = 1L, token = "guess"), success = TRUE, tag = NULL), con), silent = TRUE)
        }
      }
      Sys.sleep(0.01)
    }
  })
  on.exit(tools::pskill(stranger$pid, tools::SIGKILL), add = TRUE)
  Sys.sleep(0.5)
  cl <- local_cluster(I(2), port = port)
  # Both nodes are workers we launched, answering as such.
  pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
  expect_identical(pids, cluster_pids(cl))
  expect_false(stranger$pid %in% pids)
  expect_true(all(pids %in% parallelly:::backend_running_children()))
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
})
