# No leaks: create/use/stop cycles leave the master's open file descriptors, threads, child
# processes, R connections and SSH connections where they started. (A bounded number of
# cycles here; set R_PARALLELLY_LEAK_CYCLES for the long version.)

resources <- function() {
  list(
    fds = length(list.files("/proc/self/fd")),
    threads = length(list.files("/proc/self/task")),
    children = parallelly:::backend_child_count(),
    running = length(parallelly:::backend_running_children()),
    connections = nrow(showConnections(all = FALSE)),
    ssh = nrow(parallelly:::backend_ssh_connections())
  )
}

settled <- function(before) {
  # Output-capture threads end when their worker's pipes close, a moment after it exits;
  # the last killed child is forgotten at the next launch (launch one: /bin/true).
  wait_for(function() {
    parallelly:::backend_launch("/bin/true", character(0))
    Sys.sleep(0.05)
    after <- resources()
    after$children <- max(0L, after$children - 1L)  # /bin/true itself, just launched
    identical(after, before)
  }, timeout = 10)
}

# stopCluster() returns before its workers have exited (a reaper thread waits for them):
# let a warm-up's workers end before taking the "before" snapshot.
quiesce <- function() {
  wait_for(function() length(parallelly:::backend_running_children()) == 0L &&
             parallelly:::backend_reapers_active() == 0L, timeout = 10)
  Sys.sleep(0.2)  # the output pipes close a moment after the exits
}

cycles <- as.integer(Sys.getenv("R_PARALLELLY_LEAK_CYCLES", "10"))

test_that("local create/use/stop cycles leak nothing", {
  # Exited children are remembered (to say why a worker died) up to a cap: keep none here.
  withr::local_envvar(R_PARALLELLY_EXITED_CHILDREN_KEPT = "0")
  cl <- makeClusterPSOCK(1); parallel::stopCluster(cl)  # warm-up: lazy one-time state
  quiesce()
  before <- resources()
  for (i in seq_len(cycles)) {
    cl <- makeClusterPSOCK(2)
    expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
    if (i %% 2 == 0) { killNode(cl[[1]]); cl[[1]] <- cloneNode(cl[[1]]) }
    parallel::stopCluster(cl)
  }
  expect_true(settled(before), info = paste(capture.output(str(list(before = before, after = resources()))), collapse = "\n"))
})

test_that("the package's node tables do not grow over 20 make/stop cycles", {
  stop_tables <- function() mget(parallelly:::node_stop_tables, envir = parallelly:::.package)
  holds <- function(keys) {
    vapply(stop_tables(), function(t) any(vapply(keys, exists, NA, envir = t, inherits = FALSE)), NA)
  }
  cl <- makeClusterPSOCK(2); parallel::stopCluster(cl)  # warm-up: lazy one-time state
  rm(cl); invisible(gc())
  before <- parallelly:::node_table_sizes()
  for (i in 1:20) {
    cl <- makeClusterPSOCK(2)
    expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
    keys <- vapply(cl, function(node) attr(node, "process")$key, "")
    if (i %% 2 == 0) {
      # A killed node: its cause of death and what print() learnt are kept until the stop.
      expect_true(killNode(cl[[2]]))
      expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE)))
      expect_match(summary(cl)$exit[2], "SIGTERM")
      capture.output(print(cl[[2]]))
      expect_true(any(holds(keys)))
    }
    parallel::stopCluster(cl)
    # Gone at the stop, not when R collects the nodes.
    expect_false(any(holds(keys)), label = sprintf("cycle %d: an entry of a stopped node", i))
  }
  # What a stopped node itself still needs (options, session information, its end) goes
  # with its connection object.
  rm(cl); invisible(gc())
  expect_identical(parallelly:::node_table_sizes(), before)
})

test_that("mixed local and remote create/use/stop cycles leak nothing", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- makeClusterPSOCK(c("localhost", "testhost1")); parallel::stopCluster(cl)
  quiesce()
  before <- resources()
  for (i in seq_len(max(2L, cycles %/% 2L))) {
    cl <- makeClusterPSOCK(c("localhost", "testhost1", "testhost2"))
    expect_equal(unlist(parallel::parLapply(cl, 1:6, sqrt)), sqrt(1:6))
    expect_true(all(isNodeAlive(cl)))
    parallel::stopCluster(cl)
  }
  expect_true(settled(before), info = paste(capture.output(str(list(before = before, after = resources()))), collapse = "\n"))
})

test_that("fork-server cycles (local and remote) leak nothing, and no server outlives its workers", {
  withr::local_envvar(R_PARALLELLY_EXITED_CHILDREN_KEPT = "0")
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  workers <- c("localhost", "localhost", "testhost1", "testhost1")
  cl <- makeClusterPSOCK(workers, setup_strategy = "fork"); parallel::stopCluster(cl)
  quiesce()
  before <- resources()
  for (i in seq_len(max(2L, cycles %/% 2L))) {
    cl <- makeClusterPSOCK(workers, setup_strategy = "fork")
    expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))
    if (i %% 2 == 0) { killNode(cl[c(1, 3)]); cl[c(1, 3)] <- cloneNode(cl[c(1, 3)]) }
    parallel::stopCluster(cl)
  }
  expect_length(ls(parallelly:::.package$fork_servers), 0L)
  expect_true(wait_for(function() length(remote_r_pids("testhost1")) == 0L, timeout = 10))
  expect_true(settled(before), info = paste(capture.output(str(list(before = before, after = resources()))), collapse = "\n"))
})

test_that("a file the master holds open reaches no worker, launched or forked", {
  # (Forked: the fork server is launched clean, and marks what it holds close-on-exec in
  # each child it forks, src/rust/src/fds.rs; its own tests cover that step.)
  # R opens file connections without close-on-exec (its sockets have it): without care,
  # every worker started while one is open would hold it open too.
  links <- function() {
    f <- list.files("/proc/self/fd")
    Sys.readlink(file.path("/proc/self/fd", f))
  }
  path <- normalizePath(tempfile("parallelly-held-"), mustWork = FALSE)
  con <- file(path, "w")
  on.exit({ close(con); unlink(path) }, add = TRUE)
  expect_true(path %in% links())
  for (strategy in c("sequential", "fork")) {
    cl <- local_cluster(1L, setup_strategy = strategy)
    theirs <- parallel::clusterCall(cl, links)[[1]]
    expect_true(any(grepl("^socket:", theirs)), label = strategy)  # its connection to the master
    expect_false(path %in% theirs, label = strategy)
    parallel::stopCluster(cl)
  }
})
