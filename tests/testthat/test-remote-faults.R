# Remote hosts behind a network partition (iptables rules on the test hosts' loopback
# addresses and ports only, always removed again): a request that timed out never runs
# later, and every operation keeps to its own timeout.

remote_logs <- function(host, hosts) {
  remote_exec(host, "ls /tmp/parallelly-worker-*.log 2>/dev/null; true", hosts = hosts)
}

# Shell processes on a host (the control shells and the launch watchdogs), leaving out
# the one that looks.
remote_shells <- function(host, hosts) {
  out <- remote_exec(host, "for p in /proc/[0-9]*; do [ ${p#/proc/} = $$ ] && continue; c=$(cat $p/comm 2>/dev/null); case $c in sh|dash|bash) echo ${p#/proc/};; esac; done",
                     hosts = hosts)
  as.integer(out)
}

test_that("a kill that timed out during a partition does not kill the worker after the heal", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1")
  pid <- node_pid(cl[[1]])
  expect_true(isNodeAlive(cl[[1]]))

  heal <- local_partition("testhost1", hosts)
  t <- elapsed(expect_warning(res <- killNode(cl[[1]], timeout = 3), "Could not kill"))
  expect_identical(res, NA)
  expect_lt(t, 4.5)
  heal()
  # Once a probe sent after the kill is answered, the kill has reached the host too.
  expect_true(wait_for(function() isTRUE(suppressWarnings(isNodeAlive(cl[[1]], timeout = 30))), timeout = 60))
  Sys.sleep(1)
  expect_true(pid %in% remote_r_pids("testhost1", hosts))
  expect_identical(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
})

test_that("a setup that timed out during a partition leaves no worker, log or watchdog after the heal", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  # A cluster that holds the connection, so that the new setup does not need to connect.
  # Both setups launch plainly: with "auto", the first one on testhost2 in this session
  # starts a fork server there, which cannot fork and is stopped; its launch watchdog
  # outlives it by up to 2 s and then waits as a zombie for the next request to reap it,
  # so the snapshot of the host's shells below would hold a shell that goes away by itself.
  cl0 <- local_cluster("testhost2", setup_strategy = "parallel")
  expect_true(isNodeAlive(cl0[[1]]))
  pids0 <- remote_r_pids("testhost2", hosts)
  logs0 <- remote_logs("testhost2", hosts)
  shells0 <- remote_shells("testhost2", hosts)

  heal <- local_partition("testhost2", hosts)
  t <- elapsed(expect_error(makeClusterPSOCK(c("testhost2", "testhost2"), connectTimeout = 3, setup_strategy = "parallel")))
  expect_lt(t, 10)
  heal()
  expect_true(wait_for(function() isTRUE(suppressWarnings(isNodeAlive(cl0[[1]], timeout = 30))), timeout = 60))
  Sys.sleep(2)
  expect_setequal(remote_r_pids("testhost2", hosts), pids0)
  expect_setequal(remote_logs("testhost2", hosts), logs0)
  expect_setequal(remote_shells("testhost2", hosts), shells0)
})

test_that("isNodeAlive() over two partitioned hosts keeps to its timeout", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_no_iptables()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost2"))
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  heal <- local_partition(c("testhost1", "testhost2"), hosts)
  t <- elapsed(got <- with_warnings(isNodeAlive(cl, timeout = 2)))
  res <- got$value
  warnings <- got$warnings
  expect_identical(res, c(NA, NA))
  expect_length(warnings, 2L)
  expect_match(warnings, "Could not infer whether", all = TRUE)
  expect_lt(t, 3)
  heal()
  expect_true(wait_for(function() identical(suppressWarnings(isNodeAlive(cl, timeout = 30)), c(TRUE, TRUE)), timeout = 60))
})

test_that("cloneNode() honours the connectTimeout given to it on a partitioned host", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1")
  pids0 <- remote_r_pids("testhost1", hosts)
  heal <- local_partition("testhost1", hosts)
  t <- elapsed(expect_error(cloneNode(cl[[1]], connectTimeout = 3)))
  expect_lt(t, 8)
  heal()
  expect_true(wait_for(function() isTRUE(suppressWarnings(isNodeAlive(cl[[1]], timeout = 30))), timeout = 60))
  Sys.sleep(2)
  # The withdrawn launch started no worker.
  expect_setequal(remote_r_pids("testhost1", hosts), pids0)
})

test_that("kill + clone cycles leave only the current workers' watchdogs and logs", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  shells_before <- remote_shells("testhost4", hosts)
  cl <- local_cluster("testhost4")
  # One setup: a control shell and one watchdog (a shell that sleeps).
  shells1 <- remote_shells("testhost4", hosts)
  logs1 <- remote_logs("testhost4", hosts)
  expect_length(logs1, 1L)
  for (i in 1:10) {
    expect_true(killNode(cl[[1]]))
    expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE), timeout = 10))
    cl[[1]] <- cloneNode(cl[[1]])
  }
  expect_true(isNodeAlive(cl[[1]]))
  # A watchdog polls every 2 s; an ended one is collected (no zombie) by the next probe.
  expect_true(wait_for(function() {
    isNodeAlive(cl[[1]])
    length(remote_shells("testhost4", hosts)) <= length(shells1)
  }, timeout = 8, interval = 0.5))
  # The logs of the killed workers stay for diagnostics until stopCluster() (which now also
  # knows the nodes the clones replaced).
  expect_length(remote_logs("testhost4", hosts), 11L)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() length(remote_logs("testhost4", hosts)) == 0L, timeout = 10))
  expect_true(wait_for(function() length(remote_shells("testhost4", hosts)) <= length(shells_before), timeout = 6))
})

test_that("logs of clones' predecessors that died on their own go at stopCluster()", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  cl <- local_cluster("testhost4")
  for (i in 1:3) {
    pid <- node_pid(cl[[1]])
    remote_exec("testhost4", sprintf("kill -TERM %d", pid), hosts = hosts)
    expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE), timeout = 10))
    cl[[1]] <- cloneNode(cl[[1]])
  }
  expect_length(remote_logs("testhost4", hosts), 4L)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() length(remote_logs("testhost4", hosts)) == 0L, timeout = 10))
})

test_that("isNodeAlive() reconnects lost hosts in parallel within its own timeout", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  skip_if_no_iptables()
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost2"))
  # Lose both connections (end the hosts' sshd sessions, not their listeners) ...
  ppid <- function(p) as.integer(sub("PPid:[[:space:]]*", "", grep("^PPid:", readLines(sprintf("/proc/%d/status", p)), value = TRUE)))
  for (h in c("testhost1", "testhost2")) {
    pids <- ssh_host_sshd_pids(h, hosts)
    tools::pskill(pids[vapply(pids, function(p) ppid(p) %in% pids, logical(1))], tools::SIGKILL)
  }
  expect_true(wait_for(function() !any(parallelly:::backend_ssh_connections()$alive), timeout = 10))
  # ... and make reconnecting impossible: each reconnect waits for its timeout.
  heal <- local_partition(c("testhost1", "testhost2"), hosts)
  t <- elapsed(got <- with_warnings(isNodeAlive(cl, timeout = 1)))
  res <- got$value
  warnings <- got$warnings
  expect_identical(res, c(NA, NA))
  expect_length(warnings, 2L)
  expect_lt(t, 2)
  heal()
})
