# Nagle's algorithm is off (TCP_NODELAY) on both ends of every worker connection, read back
# from the live sockets with getsockopt(): otherwise a message over one TCP segment waits
# for the peer's delayed ACK (~40 ms) before its last part is sent.

master_nodelay <- function(cl) {
  port <- parallelly:::node_options(cl[[1]])$port
  parallelly:::backend_connections_nodelay(port)
}

test_that("the master's and the workers' sockets of local workers have TCP_NODELAY", {
  cl <- local_cluster(2)
  got <- master_nodelay(cl)
  # The two workers' connections, and the fork server's when they were forked (default).
  forked <- identical(attr(cl[[1]], "process")$kind, "fork")
  expect_length(got$fd, 2L + forked)
  expect_true(all(got$nodelay))
  port <- parallelly:::node_options(cl[[1]])$port
  worker <- parallel::clusterCall(cl, function(port) {
    parallelly:::backend_connections_nodelay(port, remote = TRUE)$nodelay
  }, port)
  expect_identical(worker, list(TRUE, TRUE))
  # A message larger than one segment, both ways.
  big <- as.raw(seq_len(70000) %% 256)
  expect_identical(parallel::clusterCall(cl, identity, big), list(big, big))
})

test_that("the reader sees a socket without TCP_NODELAY as such", {
  # R's own sockets have no TCP_NODELAY unless asked for: the checks above can fail.
  port <- freePort()
  server <- serverSocket(port)
  on.exit(close(server), add = TRUE)
  client <- socketConnection("127.0.0.1", port, open = "a+b", blocking = TRUE, options = NULL)
  on.exit(close(client), add = TRUE)
  accepted <- socketAccept(server, open = "a+b", blocking = TRUE, options = NULL)
  on.exit(close(accepted), add = TRUE)
  expect_identical(parallelly:::backend_connections_nodelay(port)$nodelay, FALSE)
  expect_identical(parallelly:::backend_connections_nodelay(port, remote = TRUE)$nodelay, FALSE)
})

test_that("forked workers' master sockets have TCP_NODELAY", {
  skip_if_not(parallelly:::backend_can_fork(), "this platform cannot fork workers")
  cl <- local_cluster(2, setup_strategy = "fork")
  # The two workers' connections and the fork server's own.
  got <- master_nodelay(cl)$nodelay
  expect_gte(length(got), 2L)
  expect_true(all(got))
  port <- parallelly:::node_options(cl[[1]])$port
  worker <- parallel::clusterCall(cl, function(port) {
    parallelly:::backend_connections_nodelay(port, remote = TRUE)$nodelay
  }, port)
  expect_identical(worker, list(TRUE, TRUE))
})

test_that("a remote worker's tunnel has TCP_NODELAY on the master's socket and on the pump's", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1")
  port <- parallelly:::node_options(cl[[1]])$port
  # In the master process: the socket R accepted, and the pump's socket that connected to it.
  expect_identical(parallelly:::backend_connections_nodelay(port)$nodelay, TRUE)
  expect_identical(parallelly:::backend_connections_nodelay(port, remote = TRUE)$nodelay, TRUE)
  big <- as.raw(seq_len(70000) %% 256)
  expect_identical(parallel::clusterCall(cl, identity, big), list(big))
})

test_that("forked workers' sockets have TCP_NODELAY too", {
  cl <- local_cluster(2, setup_strategy = "fork")
  port <- parallelly:::node_options(cl[[1]])$port
  worker <- parallel::clusterCall(cl, function(port) {
    # The worker has not loaded parallelly (it is a fresh worker): ask through its namespace.
    parallelly:::backend_connections_nodelay(port, remote = TRUE)$nodelay
  }, port)
  expect_identical(worker, list(TRUE, TRUE))
})
