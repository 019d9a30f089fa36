# Large objects through the built-in client's reverse tunnel (issue 13, item 7): they arrive
# intact both ways, also with several tunnels busy at once and while the master is not
# reading. Correctness only; rates are measured by bench/ssh-transfer.R.

# `n` bytes that repeat a random block of 1,000,003 bytes: cheap to rebuild on the other
# side from the block, and a lost, doubled or swapped piece of a transfer (SSH packets are
# at most 32 KiB) shifts the pattern, so identical() catches it.
transfer_block <- function() {
  con <- file("/dev/urandom", "rb", raw = TRUE)
  on.exit(close(con))
  readBin(con, "raw", 1000003L)
}
transfer_pattern <- function(block, n) rep_len(block, n)

test_that("a 200 MB object arrives intact at a remote worker and back", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1")
  n <- 200e6
  block <- transfer_block()
  x <- transfer_pattern(block, n)
  # To the worker: it rebuilds the pattern from the block and compares.
  ok <- parallel::clusterCall(cl, function(x, block, n) {
    assign("x", x, envir = globalenv())
    identical(x, rep_len(block, n))
  }, x, block, n)[[1]]
  expect_true(ok)
  # Back: the same value, and one made on the worker.
  expect_identical(parallel::clusterEvalQ(cl, x)[[1]], x)
  rm(x)
  remote_block <- parallel::clusterEvalQ(cl, {
    con <- file("/dev/urandom", "rb", raw = TRUE)
    b <- readBin(con, "raw", 1000003L)
    close(con)
    y <- rep_len(b, 200e6)
    b
  })[[1]]
  expect_identical(parallel::clusterEvalQ(cl, y)[[1]], transfer_pattern(remote_block, n))
  # A mixed object (numbers, strings, attributes) survives too.
  obj <- list(a = seq(0, 1, length.out = 2e6), s = sprintf("w%07d", seq_len(2e5)), m = matrix(1:4e6, 2000))
  expect_identical(parallel::clusterCall(cl, identity, obj)[[1]], obj)
  expect_identical(isNodeAlive(cl), TRUE)
})

test_that("the tunnel's cipher runs on the package's ChaCha20-Poly1305, not libssh2's C", {
  # src/rust/src/ssh/crypto.rs defines libssh2's chacha and poly1305 functions in their
  # place at link time; each call counts. If libssh2's own objects were linked instead, the
  # count would not move while megabytes go through the tunnel.
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1")
  before <- parallelly:::backend_ssh_crypto_calls()
  x <- transfer_pattern(transfer_block(), 4e6)
  expect_identical(parallel::clusterCall(cl, identity, x)[[1]], x)
  calls <- parallelly:::backend_ssh_crypto_calls() - before
  # 8 MB both ways in SSH packets of at most 32 KiB: a length, a payload and a tag each.
  expect_gte(calls, 3 * 2 * 4e6 / 32768)
})

test_that("two tunnels of one connection carry large objects at the same time", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"))
  expect_identical(parallelly:::backend_ssh_connections()$tunnels, 2L)
  block <- transfer_block()
  parallel::clusterCall(cl, function(block) {
    assign("y", rep_len(rev(block), 100e6), envir = globalenv())
    NULL
  }, block)
  # Both workers send at once (the master reads one result after the other).
  got <- parallel::clusterEvalQ(cl, y)
  want <- transfer_pattern(rev(block), 100e6)
  expect_identical(got[[1]], want)
  expect_identical(got[[2]], want)
})

test_that("probes answer while a large result waits for the master to read it", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"))
  block <- transfer_block()
  parallel::clusterCall(cl[2], function(block) {
    assign("y", rep_len(block, 150e6), envir = globalenv())
    NULL
  }, block)
  # Worker 2 starts sending 150 MB that nobody reads yet: the tunnel fills its buffers and
  # the channel's window, then the worker waits. The connection's control shell must still
  # answer, and no byte may be lost when the master reads at last.
  parallel:::sendCall(cl[[2]], fun = function() y, args = list())
  Sys.sleep(1)
  expect_identical(isNodeAlive(cl, timeout = 10), c(TRUE, TRUE))
  expect_equal(parallel::clusterEvalQ(cl[1], 1 + 1)[[1]], 2)
  res <- parallel:::recvResult(cl[[2]])
  expect_identical(res, transfer_pattern(block, 150e6))
})
