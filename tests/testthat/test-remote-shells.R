# Remote users whose login shell is not bash: testhost4 (dash), testhost5 (tcsh) and
# testhost6 (fish). sshd hands every command to that shell, so what we send must mean the
# same in all of them -- with our SSH client and with an external OpenSSH client.

shell_hosts <- c(dash = "testhost4", tcsh = "testhost5", fish = "testhost6")

# Start two workers on `host`, use, probe, kill and clone them, stop them; nothing is left.
expect_cluster_works <- function(host, ...) {
  cl <- makeClusterPSOCK(rep(host, 2), ...)
  on.exit(try(parallel::stopCluster(cl), silent = TRUE), add = TRUE)
  expect_identical(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])), rep(host, 2))
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  pids <- cluster_pids(cl)
  expect_true(all(pids %in% remote_r_pids(host)))
  expect_true(killNode(cl[[1]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(FALSE, TRUE)), timeout = 10))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
  all_pids <- c(pids, cluster_pids(cl))
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(all_pids %in% remote_r_pids(host)), timeout = 10))
  # Nothing a misread redirection would leave behind (tcsh read '2>&1' as '2 >& 1': ~/1).
  expect_false("1" %in% remote_exec(host, "ls -A /home/ptest"))
}

test_that("our SSH client works for users whose login shell is dash, tcsh or fish", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  local_ssh_env(hosts)
  for (shell in names(shell_hosts)) {
    host <- shell_hosts[[shell]]
    expect_identical(hosts$hosts$shell[hosts$hosts$name == host], paste0("/usr/bin/", shell))
    expect_cluster_works(host)
  }
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("rshcmd = \"ssh\" works for users whose login shell is tcsh or fish", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if(!nzchar(Sys.which("ssh")), "no ssh client installed")
  local_ssh_env(hosts)
  for (host in shell_hosts[c("tcsh", "fish")]) {
    expect_cluster_works(host, rshcmd = "ssh", rshopts = c("-F", hosts$config, "-o", "BatchMode=yes"))
  }
})

test_that("the command for a login shell runs the same sh script in sh, dash, tcsh and fish", {
  script <- "x='it'\\''s'; printf '%s|%s\\n' \"$x\" \"$(printf %s 'a\\b')\"; echo '!$HOME' 2>&1"
  expected <- system2("/bin/sh", c("-c", shQuote(script)), stdout = TRUE)
  expect_identical(expected, c("it's|a\\b", "!$HOME"))
  command <- parallelly:::login_shell_command(script)
  for (shell in c("/bin/sh", "/usr/bin/dash", "/bin/bash", "/usr/bin/tcsh", "/usr/bin/fish")) {
    if (!file.exists(shell)) next
    out <- suppressWarnings(system2(shell, c("-c", shQuote(command)), stdout = TRUE, stderr = TRUE))
    expect_identical(as.character(out), expected, info = shell)
  }
})
