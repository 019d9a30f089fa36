# A node's launch options stay in this session (R/nodeOptions.R): the node object serializes
# small (future hashes the cluster for every future) and still clones, prints and heals.

test_that("a node carries no launch options, yet node_options() has them", {
  cl <- local_cluster(2)
  node <- cl[[1]]
  expect_null(attr(node, "options", exact = TRUE))
  opts <- parallelly:::node_options(node)
  expect_s3_class(opts, "makeNodePSOCKOptions")
  expect_identical(opts$port, parallelly:::node_options(cl[[2]])$port)
  # What travels: the node without its options (and without the worker's session
  # information, when that is kept in the node) is base R's node plus its identity.
  expect_lte(length(serialize(node, NULL)), 1024L)
  # ... yet node$session_info reads the worker's session information.
  expect_identical(node$session_info$process$pid, attr(node, "process")$pid)
  copy <- unserialize(serialize(node, NULL))
  expect_null(attr(copy, "options", exact = TRUE))
  # A copy in this session finds the options by the node's identity.
  expect_identical(parallelly:::node_options(copy), opts)
})

test_that("print(), summary() and cloneNode() work, also after the node stopped", {
  cl <- local_cluster(2)
  expect_output(print(cl), "Socket cluster with 2 nodes")
  expect_identical(nrow(summary(cl)), 2L)
  parallel::stopCluster(cl)
  clone <- cloneNode(cl[[1]])
  on.exit(parallel::stopCluster(as.cluster(clone)), add = TRUE)
  expect_identical(parallel::clusterEvalQ(as.cluster(clone), 1L), list(1L))
  expect_identical(parallelly:::node_options(clone)$restarts, 1L)
})

test_that("a self-healing node still reads its policy", {
  cl <- local_cluster(1, autoRestart = 1L)
  expect_identical(parallelly:::node_options(cl[[1]])$autoRestart, 1L)
  killNode(cl[[1]])
  expect_true(wait_for(function() identical(isNodeAlive(cl), FALSE), timeout = 5))
  expect_identical(parallel::clusterEvalQ(cl, 2L), list(2L))
})

test_that("the options go when R collects the node's connection", {
  cl <- makeClusterPSOCK(1)
  key <- attr(cl[[1]], "process")$key
  tables <- parallelly:::.package$node_tables
  expect_true(exists(key, envir = tables$options, inherits = FALSE))
  parallel::stopCluster(cl)
  rm(cl)
  invisible(gc())
  expect_false(exists(key, envir = tables$options, inherits = FALSE))
})

test_that("forked nodes are small too; digest(cl) of our nodes costs about what base R's does", {
  fl <- local_cluster(2, setup_strategy = "fork")
  expect_lte(length(serialize(fl[[1]], NULL)), 1024L)
  expect_identical(fl[[1]]$session_info$process$pid, attr(fl[[1]], "process")$pid)
  # What future hashes: the serialized cluster, within twice base R's for two nodes.
  base <- parallel::makePSOCKcluster(2)
  on.exit(parallel::stopCluster(base), add = TRUE)
  cl <- local_cluster(2)
  expect_lte(length(serialize(cl, NULL)), 2 * length(serialize(base, NULL)) + 1024L)
})
