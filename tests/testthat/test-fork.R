# setup_strategy = "fork": workers forked by one fork server per host must behave as fresh
# ones, and isNodeAlive()/killNode()/cloneNode()/stopCluster() must work on them.

server_pid <- function(server) attr(server$node, "process")$pid

fork_servers <- function() {
  env <- parallelly:::.package$fork_servers
  mget(ls(env), envir = env)
}

# What a worker can tell about itself that a fork could have inherited.
worker_facts <- function(cl) {
  parallel::clusterEvalQ(cl, list(
    pid = Sys.getpid(),
    ppid = as.integer(strsplit(sub("^.*\\) ", "", readLines(sprintf("/proc/%d/stat", Sys.getpid()))), " ")[[1]][2]),
    tempdir = tempdir(),
    tempdir_exists = dir.exists(tempdir()),
    session_tmpdir = Sys.getenv("R_SESSION_TMPDIR"),
    seed = exists(".Random.seed", envir = globalenv()),
    random = runif(1),
    connections = sort(vapply(setdiff(getAllConnections(), 0:2), function(i) summary(getConnection(i))$class, "")),
    parallelly = "parallelly" %in% loadedNamespaces(),
    token = Sys.getenv("R_PARALLELLY_WORKER_TOKEN"),
    system = system("exit 3") == 3L
  ))
}

test_that("forked local workers behave as fresh ones", {
  cl <- local_cluster(I(3), setup_strategy = "fork")
  servers <- fork_servers()
  expect_length(servers, 1L)
  spid <- server_pid(servers[[1]])
  facts <- worker_facts(cl)
  pids <- vapply(facts, `[[`, integer(1), "pid")
  expect_identical(pids, cluster_pids(cl))
  expect_false(anyDuplicated(pids) > 0L)
  expect_false(spid %in% pids)
  # Children of the server, not of the master: what makes them forks.
  expect_identical(vapply(facts, `[[`, integer(1), "ppid"), rep(spid, 3L))
  tempdirs <- vapply(facts, `[[`, character(1), "tempdir")
  expect_false(anyDuplicated(tempdirs) > 0L)
  expect_true(all(vapply(facts, `[[`, logical(1), "tempdir_exists")))
  expect_identical(vapply(facts, `[[`, character(1), "session_tmpdir"), tempdirs)
  expect_false(any(vapply(facts, `[[`, logical(1), "seed")))
  expect_false(anyDuplicated(vapply(facts, `[[`, numeric(1), "random")) > 0L)
  # The connection to the master and the worker's own log: nothing of the server's.
  for (f in facts) expect_identical(f$connections, c("file", "sockconn"))
  expect_false(any(vapply(facts, `[[`, logical(1), "parallelly")))
  expect_identical(vapply(facts, `[[`, character(1), "token"), rep("", 3L))
  expect_true(all(vapply(facts, `[[`, logical(1), "system")))
  expect_identical(vapply(cl, function(node) node$session_info$process$pid, integer(1)), pids)
  expect_equal(unlist(parallel::parLapply(cl, 1:10, sqrt)), sqrt(1:10))

  # A sibling's exit leaves the others' temporary directories (and the server's) alone.
  parallel::stopCluster(cl[1])
  expect_true(wait_for(function() !process_running(pids[1]), timeout = 10))
  expect_false(dir.exists(tempdirs[1]))
  expect_true(all(dir.exists(tempdirs[2:3])))
  expect_identical(isNodeAlive(cl[2:3]), c(TRUE, TRUE))
  expect_identical(unlist(parallel::clusterEvalQ(cl[2:3], dir.exists(tempdir()))), c(TRUE, TRUE))
})

test_that("isNodeAlive, killNode and cloneNode work on forked workers, busy or not", {
  cl <- local_cluster(2, setup_strategy = "fork")
  pids <- cluster_pids(cl)
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  send_sleep(cl[[2]], 60)
  expect_true(isNodeAlive(cl[[2]]))
  expect_true(killNode(cl[[2]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 10))
  expect_false(process_running(pids[2]))
  # Reaped by the server at once: no zombie left behind.
  expect_true(wait_for(function() !file.exists(file.path("/proc", pids[2])), timeout = 5))
  # The server, the worker's parent, tells how it ended; its output was kept.
  expect_identical(summary(cl)$exit[2], "killed by signal 15 (SIGTERM)")
  out <- paste(capture.output(print(cl[[2]])), collapse = "\n")
  expect_match(out, "killed by signal 15 (SIGTERM)", fixed = TRUE)
  expect_match(out, sprintf("Its last output was:\n.*starting worker pid=%d", pids[2]))

  # A clone of a forked node is forked again, by the same server.
  spid <- server_pid(fork_servers()[[1]])
  cl[[2]] <- cloneNode(cl[[2]])
  expect_true(is.character(attr(cl[[2]], "process")$fork_server))
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  expect_false(node_pid(cl[[2]]) %in% pids)
  ppid <- parallel::clusterEvalQ(cl[2], as.integer(strsplit(sub("^.*\\) ", "", readLines(sprintf("/proc/%d/stat", Sys.getpid()))), " ")[[1]][2]))[[1]]
  expect_identical(ppid, spid)
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
})

test_that("stopCluster stops forked workers and then their server", {
  before <- parallelly:::backend_child_count()
  cl <- makeClusterPSOCK(I(3), setup_strategy = "fork")
  spid <- server_pid(fork_servers()[[1]])
  pids <- cluster_pids(cl)
  send_sleep(cl[[1]], 60)  # busy: terminated after the grace period
  parallel::stopCluster(cl)
  # stopCluster() returns once they are told (as for our own children): the busy one is
  # still at work; threads wait for the exits and terminate what is left.
  expect_true(process_running(pids[1]))
  expect_length(fork_servers(), 0L)
  expect_true(wait_for(function() !any(vapply(c(pids, spid), process_running, logical(1))), timeout = 15))
  # Reaped (the workers by the server, which exits last; the server by our reaper thread,
  # a moment after it stopped running): nothing left.
  expect_true(wait_for(function() !any(file.exists(file.path("/proc", c(pids, spid)))), timeout = 10))
  expect_true(wait_for(function() parallelly:::backend_reapers_active() == 0L, timeout = 10))
  expect_identical(parallelly:::backend_running_children(), integer(0))
  expect_lte(parallelly:::backend_child_count(), before + 1L)
})

test_that("the server stays while a worker it forked lives, and a new cluster reuses it", {
  cl1 <- local_cluster(1, setup_strategy = "fork")
  cl2 <- local_cluster(1, setup_strategy = "fork")
  expect_length(fork_servers(), 1L)
  parallel::stopCluster(cl1)
  expect_length(fork_servers(), 1L)
  expect_true(isNodeAlive(cl2[[1]]))
  expect_equal(parallel::clusterEvalQ(cl2, 1 + 1)[[1]], 2)
  parallel::stopCluster(cl2)
  expect_length(fork_servers(), 0L)
})

test_that("a worker that cannot connect fails the setup with how it ended", {
  # A forked worker whose startup fails (its outfile cannot be opened) exits at once.
  err <- expect_error(
    makeClusterPSOCK(1, setup_strategy = "fork", outfile = "/nonexistent/dir/worker.log", connectTimeout = 20),
    class = "PSOCKConnectionError"
  )
  expect_match(conditionMessage(err), "exited with status 1")
  parallelly:::stop_all_children()
  for (s in fork_servers()) parallelly:::fork_server_drop(s)
})

test_that("setup_strategy = 'fork' is validated and falls back where it cannot apply", {
  expect_error(makeNodePSOCK("localhost", port = 11000L, setup_strategy = "forked", action = "options"),
               "setup_strategy")
  opts <- makeNodePSOCK("localhost", port = 11000L, setup_strategy = "fork", manual = TRUE,
                        dryrun = TRUE, action = "options")
  expect_identical(opts$setup_strategy, "sequential")
})

test_that("the default setup forks local workers, except for per-worker start-up code", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  cl <- local_cluster(I(5))
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), rep("fork", 5L))
  expect_identical(parallelly:::node_options(cl[[1]])$setup_strategy, "fork")
  # Start-up code runs in each worker's own R (its side effects are per worker).
  cl2 <- local_cluster(1, rscript_startup = quote(options(parallelly.test.startup = Sys.getpid())))
  expect_identical(attr(cl2[[1]], "process")$kind, "local")
  expect_identical(parallel::clusterEvalQ(cl2, getOption("parallelly.test.startup"))[[1]], node_pid(cl2[[1]]))
  # The option (and its environment variable) still choose.
  withr::local_options(parallelly.makeNodePSOCK.setup_strategy = "parallel")
  cl3 <- local_cluster(1)
  expect_identical(attr(cl3[[1]], "process")$kind, "local")
})

test_that("by default, no more local workers than cores start plain, unless a fork server runs for them", {
  skip_if_not(identical(Sys.info()[["sysname"]], "Linux"))
  servers <- function() ls(parallelly:::.package$fork_servers)
  expect_length(servers(), 0L)
  small <- min(2L, availableCores())
  cl <- local_cluster(small)
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), rep("local", small))
  expect_length(servers(), 0L)  # none started for them
  # One more than cores (or than 4): forked.
  big <- min(availableCores(), 4L) + 1L
  cl2 <- local_cluster(I(big))
  expect_identical(vapply(cl2, function(node) attr(node, "process")$kind, ""), rep("fork", big))
  expect_length(servers(), 1L)
  # With that server running, a small setup is a few forks too.
  cl3 <- local_cluster(small)
  expect_identical(vapply(cl3, function(node) attr(node, "process")$kind, ""), rep("fork", small))
  expect_length(servers(), 1L)
  # Asked for by name, a small setup forks all the same.
  parallel::stopCluster(c(cl2, cl3))
  expect_true(wait_for(function() length(servers()) == 0L, timeout = 10))
  cl4 <- local_cluster(1, setup_strategy = "fork")
  expect_identical(attr(cl4[[1]], "process")$kind, "fork")
  expect_identical(unlist(parallel::clusterEvalQ(c(cl, cl4), 1L)), rep(1L, small + 1L))
})

test_that("forked workers run futures", {
  skip_if_not_installed("future")
  cl <- local_cluster(2, setup_strategy = "fork")
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  f <- future::future(Sys.getpid())
  expect_true(future::value(f) %in% cluster_pids(cl))
  expect_equal(future.apply::future_sapply(1:6, function(i) i^2), (1:6)^2)
})

test_that("forked remote workers behave as fresh ones and can be killed and cloned", {
  hosts <- skip_if_no_ssh_hosts()
  # The fork server needs our package on the host: testhost3 has it in the user's library.
  skip_unless_package_on_testhost3(hosts)
  local_ssh_env(hosts)
  cl <- local_cluster(rep("testhost3", 3), setup_strategy = "fork")
  facts <- worker_facts(cl)
  pids <- vapply(facts, `[[`, integer(1), "pid")
  expect_identical(pids, cluster_pids(cl))
  expect_true(all(pids %in% remote_r_pids("testhost3")))
  ppids <- unique(vapply(facts, `[[`, integer(1), "ppid"))
  expect_length(ppids, 1L)
  expect_false(ppids %in% pids)
  expect_false(anyDuplicated(vapply(facts, `[[`, character(1), "tempdir")) > 0L)
  expect_false(any(vapply(facts, `[[`, logical(1), "seed")))
  expect_false(any(vapply(facts, `[[`, logical(1), "parallelly")))
  expect_identical(isNodeAlive(cl), rep(TRUE, 3L))

  send_sleep(cl[[2]], 60)
  expect_true(killNode(cl[[2]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 10))
  # Reaped by the server at once (no zombie), which tells how it ended.
  expect_true(wait_for(function() !pids[2] %in% remote_r_pids("testhost3"), timeout = 5))
  expect_identical(summary(cl)$exit[2], "killed by signal 15 (SIGTERM)")
  cl[[2]] <- cloneNode(cl[[2]])
  expect_identical(isNodeAlive(cl), rep(TRUE, 3L))
  expect_equal(unlist(parallel::parLapply(cl, 1:6, sqrt)), sqrt(1:6))
  all_pids <- c(pids, cluster_pids(cl))
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(all_pids %in% remote_r_pids("testhost3")), timeout = 10))
  expect_true(wait_for(function() length(remote_r_pids("testhost3")) == 0L, timeout = 10))
})

test_that("a server that stops answering is retired: its workers live on, new ones get a new server", {
  cl <- local_cluster(2, setup_strategy = "fork")
  old <- fork_servers()[[1]]
  old_pid <- server_pid(old)
  tools::pskill(node_pid(cl[[2]]), tools::SIGKILL)
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 5))
  tools::pskill(old_pid, tools::SIGSTOP)
  withr::defer(tools::pskill(old_pid, tools::SIGCONT))
  t0 <- Sys.time()
  s <- summary(cl)  # asks the frozen server how worker 2 ended: no answer within 5 s
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 15)
  expect_identical(s$exit[2], "exited (cause unknown)")
  expect_length(fork_servers(), 0L)
  tools::pskill(old_pid, tools::SIGCONT)
  expect_true(isNodeAlive(cl[[1]]))
  expect_equal(parallel::clusterEvalQ(cl[1], 1 + 1)[[1]], 2)
  cl2 <- local_cluster(1, setup_strategy = "fork")
  expect_false(identical(server_pid(fork_servers()[[1]]), old_pid))
  parallel::stopCluster(cl)
  # The retired server goes with its last worker.
  expect_true(wait_for(function() !process_running(old_pid), timeout = 10))
  parallel::stopCluster(cl2)
  expect_length(fork_servers(), 0L)
})

test_that("a forked worker that cannot have a temporary directory of its own ends without R's exit", {
  # In an mcparallel() child R still holds the parent's temporary directory, as a forked
  # worker would if R could not make a new one: the guard must end the child without
  # running R's exit clean-up, which would delete the parent's directory.
  mine <- tempdir()
  marker <- file.path(mine, "still-here")
  file.create(marker)
  job <- parallel::mcparallel(parallelly:::worker_temp_dir(mine))
  res <- suppressWarnings(parallel::mccollect(job, wait = TRUE, timeout = 20))  # "did not deliver"
  expect_true(dir.exists(mine))
  expect_true(file.exists(marker))
  # The child ended by _exit(70): mccollect() got no value from it.
  expect_null(res[[1]])
})

test_that("a forked worker relays future's immediate conditions and progressr updates to the master", {
  skip_if_not_installed("future")
  skip_if_not_installed("progressr")
  cl <- local_cluster(2, setup_strategy = "fork")
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  expect_immediate_conditions_relayed(cluster_pids(cl))
  expect_progress_relayed()
})
