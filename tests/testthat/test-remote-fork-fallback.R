# setup_strategy = "fork" on realistic hosts: testhost1 has no parallelly of ours (only
# Debian's reference 1.34, which cannot fork workers), testhost3 has ours in the user's
# library. Without it, the workers are launched the usual way, quietly.

# What a worker knows about itself and its parent process.
parent_facts <- function(cl) {
  parallel::clusterEvalQ(cl, {
    stat <- readLines(sprintf("/proc/%d/stat", Sys.getpid()))
    ppid <- as.integer(strsplit(sub("^.*\\) ", "", stat), " ")[[1]][2])
    list(pid = Sys.getpid(), ppid = ppid, parent = readLines(sprintf("/proc/%d/comm", ppid)),
         host = Sys.info()[["nodename"]])
  })
}

test_that("fork on a host without our package falls back to plain workers, quietly, also the second time", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  local_ssh_env(hosts)
  for (round in 1:2) {
    # Round 1 finds out that testhost1 cannot fork; round 2 uses what it found.
    expect_silent(cl <- local_cluster(rep("testhost1", 2), setup_strategy = "fork"))
    facts <- parent_facts(cl)
    expect_identical(vapply(facts, `[[`, "", "host"), rep("testhost1", 2), info = round)
    # Plain workers: started by the launch script, not forked by an R process.
    expect_false(any(vapply(facts, `[[`, "", "parent") %in% c("R", "Rscript")), info = round)
    pids <- vapply(facts, `[[`, integer(1), "pid")
    expect_identical(pids, cluster_pids(cl))
    expect_setequal(remote_r_pids("testhost1"), pids)  # no fork server left running there
    expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
    expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
    expect_true(killNode(cl[[2]]))
    expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 10))
    cl[[2]] <- cloneNode(cl[[2]])
    expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
    all_pids <- c(pids, cluster_pids(cl))
    parallel::stopCluster(cl)
    expect_true(wait_for(function() !any(all_pids %in% remote_r_pids("testhost1")), timeout = 10))
    expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  }
})

test_that("fork with one host that can and one that cannot: forked there, plain here", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_unless_package_on_testhost3(hosts)
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost3", "testhost1", "testhost3"), setup_strategy = "fork")
  facts <- parent_facts(cl)
  expect_identical(vapply(facts, `[[`, "", "host"), c("testhost3", "testhost1", "testhost3"))
  parents <- vapply(facts, `[[`, "", "parent")
  ppids <- vapply(facts, `[[`, integer(1), "ppid")
  # testhost3's two workers are children of one R process, the fork server, not a worker.
  expect_identical(parents[c(1, 3)], c("R", "R"))
  expect_identical(ppids[1], ppids[3])
  expect_false(ppids[1] %in% cluster_pids(cl))
  expect_true(ppids[1] %in% remote_r_pids("testhost3"))
  expect_false(parents[2] %in% c("R", "Rscript"))
  expect_equal(unlist(parallel::parLapply(cl, 1:6, sqrt)), sqrt(1:6))
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() length(remote_r_pids("testhost3")) == 0L, timeout = 10))
  expect_true(wait_for(function() !any(pids[2] %in% remote_r_pids("testhost1")), timeout = 10))
})
