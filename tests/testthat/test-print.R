# print() and summary() in the reference package's formats.

test_that("summary() of nodes and clusters has the reference's columns", {
  cl <- local_cluster(2)
  s <- summary(cl)
  expect_s3_class(s, "data.frame")
  reference <- c("host", "r_version", "platform", "pwd", "pid", "connection_index", "connection")
  expect_named(s, c(reference, "alive", "exit", "rss", "cpu", "uptime", "restarts", "client"))
  expect_identical(nrow(s), 2L)
  expect_identical(s$pid, cluster_pids(cl))
  expect_identical(s$r_version, rep(R.version$version.string, 2L))
  expect_identical(s$platform, rep(R.version$platform, 2L))
  expect_identical(s$connection_index, vapply(cl, function(n) as.integer(n$con), integer(1)))
  expect_match(s$connection, "^<-localhost:[0-9]+$")
  expect_equal(summary(cl[[1]])[reference], s[1, reference, drop = FALSE], ignore_attr = TRUE)
  expect_true(attr(summary(cl[[1]])$host, "localhost"))
})

test_that("print() of a node and of a cluster", {
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(2)
  node <- cl[[1]]
  expected <- sprintf("RichSOCKnode of a socket cluster on local host 'localhost' with pid %d (%s, %s) using socket connection #%d ('%s')",
                      node_pid(node), R.version$version.string, R.version$platform, as.integer(node$con),
                      summary(node$con)$description)
  expect_identical(capture.output(print(node)), expected)
  expect_identical(capture.output(print(cl)),
                   sprintf("Socket cluster with 2 nodes on host 'localhost' (%s, platform %s)",
                           R.version$version.string, R.version$platform))
  expect_identical(capture.output(print(cl[1])),
                   sprintf("Socket cluster with 1 node on host 'localhost' (%s, platform %s)",
                           R.version$version.string, R.version$platform))
  expect_invisible(print(cl))
})

test_that("print() follows useFancyQuotes", {
  withr::local_options(useFancyQuotes = TRUE)
  cl <- local_cluster(1)
  expect_output(print(cl), sprintf("on host %s (", sQuote("localhost")), fixed = TRUE)
})

test_that("nodes on different hosts or R versions use the 'where' form", {
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(I(3))
  # Pretend node 3 runs another R version.
  node <- cl[[3]]
  node$session_info$r$version.string <- "R version 9.9.9 (2099-01-01)"
  cl[[3]] <- node
  out <- capture.output(print(cl))
  expect_match(out, "^Socket cluster with 3 nodes where 2 nodes are on host 'localhost' \\(R version 4")
  expect_match(out, ", 1 node is on host 'localhost' (R version 9.9.9 (2099-01-01), platform ", fixed = TRUE)
})

test_that("a closed connection prints as broken, even after R reused its index", {
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(2)
  index <- as.integer(cl[[2]]$con)
  expect_true(killNode(cl[[2]]))
  gone <- sprintf("ERROR: invalid connection; non-existing connection #%d", index)
  expect_output(print(cl[[2]]), sprintf("using socket connection #%d ('%s')", index, gone), fixed = TRUE)
  expect_output(print(cl), sprintf("1 node (#2) has a broken connection (%s)", gone), fixed = TRUE)
  expect_identical(summary(cl)$connection[2], gone)
  # R hands out the lowest free index: open connections until one gets the node's old index.
  others <- list()
  on.exit(for (con in others) close(con), add = TRUE)
  repeat {
    con <- textConnection("reused", open = "r")
    others[[length(others) + 1L]] <- con
    if (as.integer(con) >= index || length(others) > 100L) break
  }
  expect_identical(as.integer(con), index)
  # the index now belongs to another connection, and print() says so
  taken <- sprintf("ERROR: invalid connection; existing connection #%d", index)
  expect_output(print(cl[[2]]), sprintf("('%s')", taken), fixed = TRUE)
  expect_output(print(cl), sprintf("1 node (#2) has a broken connection (%s)", taken), fixed = TRUE)
  expect_identical(summary(cl)$connection[2], taken)
  expect_identical(summary(cl[[2]])$connection, taken)
})

test_that("NULL nodes of a dry run summarise as NA rows", {
  cl <- makeClusterPSOCK(2, dryrun = TRUE, quiet = TRUE)
  s <- summary(cl)
  expect_identical(nrow(s), 2L)
  expect_true(all(is.na(s$pid)))
})
