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
  for (strategy in c("parallel", "fork")) {
    cl <- local_cluster(I(2), port = port, setup_strategy = strategy)
    # Both nodes are workers we started (our children, or forked by our fork server),
    # answering as such.
    pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
    expect_identical(pids, cluster_pids(cl))
    expect_false(stranger$pid %in% pids)
    kinds <- vapply(cl, function(node) attr(node, "process")$kind, "")
    expect_identical(kinds, rep(if (strategy == "fork") "fork" else "local", 2L))
    if (strategy == "parallel") expect_true(all(pids %in% parallelly:::backend_running_children()))
    expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
    parallel::stopCluster(cl)
  }
})

# Listening sockets on `port` from /proc/net/tcp: their local addresses ("127.0.0.1", ...).
listening_addresses <- function(port) {
  lines <- readLines("/proc/net/tcp")[-1L]
  fields <- strsplit(trimws(lines), "[[:space:]]+")
  local <- vapply(fields, `[`, "", 2L)
  state <- vapply(fields, `[`, "", 4L)
  hex <- sub(":.*$", "", local[state == "0A" & strtoi(sub("^.*:", "", local), 16L) == port])
  vapply(hex, function(h) paste(rev(strtoi(substring(h, c(1, 3, 5, 7), c(2, 4, 6, 8)), 16L)), collapse = "."), "")
}

test_that("the master listens on 127.0.0.1 only when every worker connects from this machine", {
  port <- freePort("random")
  server <- parallelly:::open_server_socket(port, loopback = TRUE)
  on.exit(close(server), add = TRUE)
  expect_identical(unname(listening_addresses(port)), "127.0.0.1")
  # 127.0.0.2 is this machine too, but not the loopback address the socket is bound to.
  expect_error(suppressWarnings(socketConnection("127.0.0.2", port, blocking = TRUE, open = "a+b", timeout = 2)))
  client <- socketConnection("127.0.0.1", port, blocking = TRUE, open = "a+b", timeout = 2)
  on.exit(close(client), add = TRUE)
  accepted <- socketAccept(server, blocking = TRUE, open = "a+b", timeout = 2)
  on.exit(close(accepted), add = TRUE)
  serialize("hello", client)
  expect_identical(unserialize(accepted), "hello")
})

test_that("during a local setup, the port is reachable from loopback only", {
  port <- freePort("random")
  pidfile <- withr::local_tempfile()
  script <- withr::local_tempfile(fileext = ".R")
  # A master whose worker takes 3 s to start: the setup is under way while we look.
  writeLines(c("library(parallelly)",
               sprintf("cl <- makeClusterPSOCK(1, port = %d, rscript_startup = 'Sys.sleep(3)')", port),
               sprintf("writeLines('done', %s)", deparse1(pidfile)),
               "parallel::stopCluster(cl)"), script)
  master <- parallelly:::backend_launch(file.path(R.home("bin"), "Rscript"), script)$pid
  withr::defer(parallelly:::stop_all_children())
  expect_true(wait_for(function() length(listening_addresses(port)) > 0L, timeout = 30))
  expect_identical(unname(listening_addresses(port)), "127.0.0.1")
  expect_true(wait_for(function() file.exists(pidfile), timeout = 60))
})

test_that("a local worker told to connect to another address still can", {
  # master = 127.0.0.2: not loopback-only, so the socket listens on every interface.
  cl <- local_cluster(1, master = "127.0.0.2")
  expect_identical(isNodeAlive(cl), TRUE)
  expect_equal(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
})

test_that("strangers sending garbage, a huge length, a truncated, a dripping or a foreign message are dropped; the workers still join", {
  port <- freePort("random")
  # What a worker sends, with a guessed token, and the serialization header alone.
  answer <- serialize(list(type = "VALUE", value = list(pid = 1L, token = "guess"), success = TRUE,
                           time = proc.time() - proc.time(), tag = NULL), NULL)
  header <- head(serialize(NULL, NULL), -4L)
  int <- function(x) writeBin(as.integer(x), raw(), endian = "big")
  messages <- list(
    garbage = charToRaw("GET / HTTP/1.1\r\nHost: master\r\n\r\n"),
    huge = c(header, int(19L), int(.Machine$integer.max)),
    truncated = head(answer, length(answer) %/% 2L),
    foreign = serialize(list(type = "VALUE", value = list(pid = 1L, token = new.env())), NULL, xdr = FALSE),
    oversized = serialize(list(type = "VALUE", value = list(pid = 1L, token = strrep("x", 1e4))), NULL),
    dripping = answer
  )
  strangers <- parallel::mcparallel({
    deadline <- Sys.time() + 30
    cons <- list()
    # Once the master listens on 127.0.0.1 only (a connection to the socket it replaces is lost).
    while (!("127.0.0.1" %in% listening_addresses(port)) && Sys.time() < deadline) Sys.sleep(0.01)
    while (length(cons) < length(messages) && Sys.time() < deadline) {
      con <- tryCatch(suppressWarnings(socketConnection("127.0.0.1", port, blocking = TRUE, open = "a+b", timeout = 1)),
                      error = function(e) NULL)
      if (is.null(con)) { Sys.sleep(0.01); next }
      cons[[length(cons) + 1L]] <- con
      name <- names(messages)[length(cons)]
      if (name != "dripping") try(writeBin(messages[[name]], con), silent = TRUE)
    }
    # One byte every 0.2 s: every wait for a piece is short, the whole never arrives in time.
    for (b in messages$dripping) {
      if (inherits(try(writeBin(b, cons[[length(cons)]]), silent = TRUE), "try-error") || Sys.time() > deadline) break
      Sys.sleep(0.2)
    }
  })
  on.exit(tools::pskill(strangers$pid, tools::SIGKILL), add = TRUE)
  withr::local_options(parallelly.debug = TRUE)
  t0 <- Sys.time()
  log <- capture.output(type = "message", {
    # The workers connect after the strangers (each of those gets its own 5 s at most).
    cl <- local_cluster(I(2), port = port, setup_strategy = "parallel", connectTimeout = 60,
                        rscript_startup = quote(Sys.sleep(2)))
  })
  took <- as.double(difftime(Sys.time(), t0, units = "secs"))
  pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
  expect_true(all(pids %in% parallelly:::backend_running_children()))
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
  dropped <- grep("Dropped a connection", log, value = TRUE)
  expect_true(any(grepl("not R's binary serialization", dropped)))
  expect_true(any(grepl("length 2147483647 \\(over the 4096 byte cap\\)", dropped)))
  expect_true(any(grepl("type 4, which a worker's answer never holds", dropped)))
  expect_true(any(grepl("a string of 10000 bytes", dropped)))
  expect_equal(sum(grepl("did not arrive in time \\([1-9]", dropped)), 2L)  # truncated, dripping
  # The dripping one holds the setup for its 5 s budget and a last wait of at most a second or so.
  expect_lt(took, 20)
})
