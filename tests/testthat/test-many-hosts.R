# Many hosts at once (R/setupHosts.R, stop_nodes(), ask_groups()): setup, probes, kills,
# clones and stop run all hosts together within one timeout, so that a partitioned or
# failing host costs its own timeout, never the sum over hosts, and holds no other host back.

# Eight SSH test hosts that can run workers (testhost7's /tmp is full).
eight_hosts <- sprintf("testhost%d", c(1:6, 8, 9))

registered_fork_servers <- function() {
  env <- parallelly:::.package$fork_servers
  vapply(mget(ls(env), envir = env), function(s) parallelly:::node_key(s$node), "")
}

test_that("8 hosts start together, each worker on its host, and clone together", {
  hosts <- skip_if_no_ssh_hosts(9)
  local_ssh_env(hosts)
  cl <- local_cluster(rep(eight_hosts, each = 2), setup_strategy = "parallel")
  expect_length(cl, 16L)
  expect_identical(vapply(cl, function(node) as.character(node$host), ""), rep(eight_hosts, each = 2))
  expect_identical(isNodeAlive(cl), rep(TRUE, 16L))
  # Known by PID and start time, also those that connected before their host's launch
  # command answered.
  expect_false(anyNA(vapply(cl, function(node) as.numeric(attr(node, "process")$start_time), numeric(1))))
  if (identical(hosts$pidns, "separate")) {
    # Each host has its own UTS namespace: the workers tell where they run.
    expect_identical(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])), rep(eight_hosts, each = 2))
  }
  s <- summary(cl)
  expect_identical(s$alive, rep(TRUE, 16L))
  expect_true(all(s$rss > 0))
  # Every host's nodes relaunched in one call.
  cl2 <- cloneNode(cl[seq(1L, 16L, by = 2L)])
  withr::defer(try(parallel::stopCluster(cl2), silent = TRUE))
  expect_identical(vapply(cl2, function(node) as.character(node$host), ""), eight_hosts)
  expect_identical(isNodeAlive(cl2), rep(TRUE, 8L))
  expect_identical(unlist(parallel::clusterEvalQ(cl2, 1 + 1)), rep(2, 8L))
  # Local workers of the same call start alongside.
  cl3 <- local_cluster(c("localhost", "testhost1", "localhost", "testhost8"), setup_strategy = "parallel")
  expect_identical(isNodeAlive(cl3), rep(TRUE, 4L))
  pids <- unlist(parallel::clusterEvalQ(cl3, Sys.getpid()))
  expect_true(all(vapply(pids[c(1L, 3L)], process_running, TRUE)))
  if (identical(hosts$pidns, "separate")) {
    expect_identical(unlist(parallel::clusterEvalQ(cl3[c(2L, 4L)], Sys.info()[["nodename"]])), c("testhost1", "testhost8"))
  }
})

test_that("one partitioned host of 8: probes and kills keep to the timeout, stop to its grace", {
  hosts <- skip_if_no_ssh_hosts(9)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  cl <- local_cluster(rep(eight_hosts, each = 2), setup_strategy = "parallel")
  expect_identical(isNodeAlive(cl), rep(TRUE, 16L))
  cut <- which(vapply(cl, function(node) identical(as.character(node$host), "testhost2"), TRUE))
  heal <- local_partition("testhost2", hosts)

  t <- elapsed(got <- with_warnings(isNodeAlive(cl, timeout = 2)))
  expect_lt(t, 3)
  expect_identical(got$value[cut], c(NA, NA))
  expect_identical(got$value[-cut], rep(TRUE, 14L))
  expect_length(got$warnings, 1L)
  expect_match(got$warnings, "'testhost2'", fixed = TRUE)

  # summary() probes and reads resource use of all hosts at once (its timeout: 5 s).
  t <- elapsed(s <- summary(cl))
  expect_lt(t, 6.5)
  expect_identical(s$alive[cut], c(NA, NA))
  expect_true(all(s$rss[-cut] > 0))

  # SIGCONT: a signal that leaves the workers running.
  t <- elapsed(got <- with_warnings(killNode(cl, signal = tools::SIGCONT, timeout = 2)))
  expect_lt(t, 3)
  expect_identical(got$value[cut], c(NA, NA))
  expect_identical(got$value[-cut], rep(TRUE, 14L))

  # The other hosts' workers exit on DONE; the partitioned host is given up after the 5 s grace.
  others <- lapply(setdiff(eight_hosts, "testhost2")[1:2], function(h) {
    list(host = h, pids = cluster_pids(cl[vapply(cl, function(node) identical(as.character(node$host), h), TRUE)]))
  })
  t <- elapsed(parallel::stopCluster(cl))
  expect_lt(t, 6)
  for (o in others) expect_false(any(o$pids %in% remote_r_pids(o$host, hosts)))
  heal()
})

test_that("the running fork servers of 8 hosts are checked at once: partitioned ones cost one connectTimeout", {
  hosts <- skip_if_no_fork_hosts()
  skip_if_no_iptables()
  local_ssh_env(hosts)
  before <- registered_fork_servers()
  cl <- local_cluster(rep(fork_hosts, each = 2), setup_strategy = "fork")
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), rep("fork", 16L))
  servers <- setdiff(registered_fork_servers(), before)
  expect_length(servers, 8L)
  # A second cluster reuses the 8 running servers (no new one), all checked together.
  cl2 <- makeClusterPSOCK(fork_hosts, setup_strategy = "fork")
  expect_identical(unlist(parallel::clusterEvalQ(cl2, 1 + 1)), rep(2, 8L))
  expect_setequal(setdiff(registered_fork_servers(), before), servers)
  parallel::stopCluster(cl2)

  # Two hosts partitioned: their checks (and forks) run out together at the one deadline,
  # while the other hosts' servers answer at once.
  cut <- fork_hosts[c(2L, 5L)]
  heal <- local_partition(cut, hosts)
  t <- elapsed(err <- tryCatch(makeClusterPSOCK(fork_hosts, setup_strategy = "fork", connectTimeout = 4),
                               error = function(e) e))
  expect_lt(t, 4 + 3)
  expect_s3_class(err, "PSOCKConnectionError")
  expect_setequal(err$host, cut)
  expect_match(conditionMessage(err), "failed on 2 of 8 hosts", fixed = TRUE)
  expect_match(conditionMessage(err), sprintf("Host '%s': .*did not answer within 4 seconds", cut[1L]))
  # The first cluster is stopped within its grace (5 s), the partitioned hosts given up; the
  # servers' workers are then checked on all hosts at once (2 s).
  t <- elapsed(parallel::stopCluster(cl))
  expect_lt(t, 8)
  heal()
})

test_that("summary() asks the fork servers of all hosts at once how their workers ended", {
  hosts <- skip_if_no_fork_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(rep(fork_hosts, each = 2), setup_strategy = "fork")
  server_pid <- function(host) {
    env <- parallelly:::.package$fork_servers
    for (s in mget(ls(env), envir = env)) if (identical(s$host, host)) return(attr(s$node, "process")$pid)
    NA_integer_
  }
  # One worker killed on each of three hosts; the fork servers (their parents, which tell
  # how they ended) of two of those hosts frozen.
  killed <- c(1L, 3L, 5L)
  frozen <- fork_hosts[1:2]
  pids <- vapply(frozen, server_pid, integer(1))
  expect_false(anyNA(pids))
  expect_identical(killNode(cl[killed], signal = tools::SIGKILL), rep(TRUE, 3L))
  for (k in seq_along(frozen)) remote_exec(frozen[k], sprintf("kill -STOP %d", pids[k]), hosts = hosts)
  withr::defer(for (k in seq_along(frozen)) remote_exec(frozen[k], sprintf("kill -CONT %d", pids[k]), error = FALSE, hosts = hosts))
  expect_true(wait_for(function() all(isNodeAlive(cl[killed]) %in% FALSE), timeout = 10))
  # Two silent servers cost the 5 s timeout once, not once each.
  t <- elapsed(s <- summary(cl))
  expect_lt(t, 5 + 2.5)
  expect_identical(s$alive, replace(rep(TRUE, 16L), killed, FALSE))
  expect_identical(s$exit[killed[1:2]], rep("exited (cause unknown)", 2L))
  expect_match(s$exit[killed[3L]], "killed by signal 9", fixed = TRUE)
  expect_true(all(is.na(s$exit[-killed])))
  for (k in seq_along(frozen)) remote_exec(frozen[k], sprintf("kill -CONT %d", pids[k]), hosts = hosts)
})

test_that("a setup whose hosts fail names each failed host and why, within one connectTimeout", {
  hosts <- skip_if_no_ssh_hosts(9)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  before <- remote_r_pids("testhost1", hosts)
  heal <- local_partition(c("testhost2", "testhost5"), hosts)
  workers <- rep(c("testhost1", "testhost2", "testhost5", "testhost7", "testhost8"), each = 2)
  # 8 s: the reachable hosts' workers must start within it on a loaded machine too.
  t <- elapsed(err <- tryCatch(makeClusterPSOCK(workers, connectTimeout = 8, setup_strategy = "parallel"),
                               error = function(e) e))
  # Two partitioned hosts cost one connectTimeout (8 s), not two.
  expect_lt(t, 12)
  expect_s3_class(err, "PSOCKConnectionError")
  expect_s3_class(err, "parallellyError")
  expect_setequal(err$host, c("testhost2", "testhost5", "testhost7"))
  msg <- conditionMessage(err)
  expect_match(msg, "failed on 3 of 5 hosts", fixed = TRUE)
  expect_match(msg, "Host 'testhost7': .*is full or not writable")
  expect_match(msg, "Host 'testhost2': .*(did not answer|timed out)")
  expect_match(msg, "Host 'testhost5': .*(did not answer|timed out)")
  heal()
  # The hosts that started were stopped with the setup.
  expect_true(wait_for(function() setequal(remote_r_pids("testhost1", hosts), before), timeout = 10))
})

test_that("external-client probes of many hosts run at once and keep to the timeout", {
  hosts <- skip_if_no_ssh_hosts(9)
  skip_if_no_iptables()
  skip_if(!nzchar(Sys.which("ssh")), "no ssh client installed")
  local_ssh_env(hosts)
  four <- c("testhost1", "testhost2", "testhost8", "testhost9")
  cl <- local_cluster(four, rshcmd = "ssh", rshopts = c("-F", hosts$config, "-o", "BatchMode=yes"),
                      setup_strategy = "parallel")
  expect_identical(isNodeAlive(cl), rep(TRUE, 4L))
  heal <- local_partition("testhost2", hosts)
  t <- elapsed(got <- with_warnings(isNodeAlive(cl, timeout = 5)))
  # One client per host, all at once: the partitioned host costs the timeout once.
  expect_lt(t, 6.5)
  expect_identical(got$value, c(TRUE, NA, TRUE, TRUE))
  expect_match(got$warnings, "'testhost2'.*did not answer within 5 seconds")
  heal()
})

test_that("workers and fork servers beyond R's connections fail before any launch, naming the limit", {
  hosts <- skip_if_no_ssh_hosts(9)
  skip_unless_package_on_testhost3(hosts)
  local_ssh_env(hosts)
  before <- remote_r_pids("testhost3", hosts)
  # Leave 3 connections: enough for 2 workers (and the setup's check), not for 2 fork
  # servers (here and on testhost3) as well.
  fill <- list()
  withr::defer(for (con in fill) close(con))
  while (parallelly::freeConnections() > 3L) fill[[length(fill) + 1L]] <- rawConnection(raw(0L), open = "r")
  t <- elapsed(err <- tryCatch(makeClusterPSOCK(c("localhost", "testhost3"), setup_strategy = "fork", validate = FALSE),
                               error = function(e) e))
  expect_s3_class(err, "parallellyArgumentError")
  expect_match(conditionMessage(err), "the fork server of each of 2 hosts (4 in all", fixed = TRUE)
  expect_match(conditionMessage(err), "--max-connections=N", fixed = TRUE)
  # Before any launch: nothing was started on the host, nor connected to.
  expect_lt(t, 2)
  expect_identical(remote_r_pids("testhost3", hosts), before)
  for (con in fill) close(con)
  fill <- list()
  # The full setup works afterwards.
  cl <- local_cluster(c("localhost", "testhost3"), setup_strategy = "fork")
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
})
