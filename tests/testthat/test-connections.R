test_that("availableConnections() and freeConnections() count connections", {
  n <- availableConnections()
  expect_length(n, 1L)
  expect_true(is.infinite(n) || n >= 3)
  expect_identical(availableConnections(), n)  # memoised
  expect_equal(freeConnections(), n - length(getAllConnections()))

  con <- rawConnection(raw(0L))
  on.exit(close(con))
  expect_equal(freeConnections(), n - length(getAllConnections()))

  withr::local_options(parallelly.availableConnections = 50)
  expect_identical(availableConnections(), 50)
  expect_equal(freeConnections(), 50 - length(getAllConnections()))
  withr::local_options(parallelly.availableConnections = 2)
  expect_error(availableConnections(), "availableConnections")
})

test_that("connectionId() gives 0-2 for the standard streams", {
  expect_identical(connectionId(stdin()), 0L)
  expect_identical(connectionId(stdout()), 1L)
  expect_identical(connectionId(stderr()), 2L)
  expect_true(isConnectionValid(stdin()))
  expect_true(isConnectionValid(stdout()))
  expect_true(isConnectionValid(stderr()))
})

test_that("a serialized connection is no longer valid", {
  file <- tempfile()
  on.exit(unlink(file))
  con <- file(file, open = "w")
  on.exit(close(con), add = TRUE)

  id <- connectionId(con)
  expect_gte(id, 3)
  expect_match(attr(id, "raw_id"), "^<pointer: ")
  expect_true(isConnectionValid(con))

  con2 <- unserialize(serialize(con, NULL))
  expect_identical(as.integer(con2), as.integer(con))
  expect_identical(as.numeric(connectionId(con2)), -1)
  valid <- isConnectionValid(con2)
  expect_false(valid)
  expect_match(attr(valid, "reason"), "It differ from the currently registered R connection")
  expect_true(isConnectionValid(con))
})

test_that("a closed connection, or one whose index was reused, is not valid", {
  con <- rawConnection(raw(0L))
  index <- as.integer(con)
  close(con)
  valid <- isConnectionValid(con)
  expect_false(valid)
  expect_match(attr(valid, "reason"),
               sprintf("no registered R connection with that index %d", index))

  con2 <- rawConnection(raw(0L))
  on.exit(close(con2))
  if (as.integer(con2) == index) {
    valid <- isConnectionValid(con)
    expect_false(valid)
    expect_match(attr(valid, "reason"), sprintf("same index %d", index))
    expect_true(isConnectionValid(con2))
  }
})

test_that("connections without a conn_id have id NA", {
  con <- structure(5L, class = c("file", "connection"))
  expect_identical(connectionId(con), NA_integer_)
  expect_error(isConnectionValid(42L), "con")
})

test_that("all.equal() tells connections with the same index apart", {
  con1 <- rawConnection(raw(0L))
  close(con1)
  con2 <- rawConnection(raw(0L))
  close(con2)
  expect_identical(as.integer(con1), as.integer(con2))
  expect_identical(all.equal(con1, con2), "Connections differ")
  expect_false(isTRUE(all.equal(con1, con2)))
  expect_true(all.equal(con1, con1))
  expect_true(all.equal(stdout(), stdout()))
})

test_that("isConnectionValid() tells apart connections that share an index, for sockets too", {
  port <- freePort()
  server <- serverSocket(port)
  on.exit(close(server), add = TRUE)
  a <- socketConnection("127.0.0.1", port, open = "a+b", blocking = TRUE)
  expect_true(isConnectionValid(a))
  index <- as.integer(a)
  close(a)
  # Reuse the index with another kind of connection.
  b <- rawConnection(raw(0L), open = "r")
  on.exit(close(b), add = TRUE)
  expect_identical(as.integer(b), index)
  expect_false(isConnectionValid(a))
  expect_true(isConnectionValid(b))
  expect_match(attr(connectionId(b), "raw_id"), "^<pointer: ")
  expect_false(identical(connectionId(a), connectionId(b)))
})

test_that("the internal yes/no answer agrees with isConnectionValid() without describing the connection", {
  f <- tempfile()
  on.exit(unlink(f), add = TRUE)
  con <- file(f, open = "w")
  expect_true(parallelly:::connection_is_current(con))
  expect_true(isConnectionValid(con))
  close(con)
  expect_false(parallelly:::connection_is_current(con))
  expect_false(isTRUE(isConnectionValid(con)))
  con2 <- file(f, open = "w")
  on.exit(close(con2), add = TRUE)
  expect_identical(as.integer(con2), as.integer(con))
  expect_false(parallelly:::connection_is_current(con))
  expect_false(isTRUE(isConnectionValid(con)))
  expect_true(parallelly:::connection_is_current(con2))
  expect_true(parallelly:::connection_is_current(stdout()))
})
