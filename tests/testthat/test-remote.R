# Remote workers through the built-in SSH client, against real sshd test hosts on loopback
# (each in its own PID namespace, so a remote PID means nothing locally).

test_that("the seed scenario works with a local and a remote worker", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(c("localhost", "testhost1"))
  expect_s3_class(cl, c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
  expect_false(attr(cl[[2]]$host, "localhost"))
  expect_identical(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]]))[2], "testhost1")
  out <- capture.output(print(cl))
  expect_match(out, "^Socket cluster with 2 nodes where 1 node is on host 'localhost' \\(R version")
  expect_match(out, "1 node is on host 'testhost1' (R version", fixed = TRUE)
  expect_match(capture.output(print(cl[[2]])), "^RichSOCKnode of a socket cluster on remote host 'testhost1' with pid [0-9]+ ")
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  pid <- node_pid(cl[[2]])
  expect_true(pid %in% remote_r_pids("testhost1"))

  # Kill the remote worker while it is busy.
  send_sleep(cl[[2]], 60)
  expect_true(isNodeAlive(cl[[2]]))
  expect_true(killNode(cl[[2]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[2]]), FALSE), timeout = 10))
  expect_false(pid %in% remote_r_pids("testhost1"))
  expect_error(parallel::parLapply(cl, 1:8, sqrt))
  expect_output(print(cl), "1 node (#2) has a broken connection", fixed = TRUE)

  # Relaunch it on the same host.
  cl[[2]] <- cloneNode(cl[[2]])
  expect_identical(cl[[2]]$session_info$system$nodename, "testhost1")
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  expect_equal(unlist(parallel::parLapply(cl, 1:8, sqrt)), sqrt(1:8))

  # Grow it with clones of both.
  cl <- c(cl, cloneNode(cl[c(1, 1, 2)]))
  out <- capture.output(print(cl))
  expect_match(out, "Socket cluster with 5 nodes where 3 nodes are on host 'localhost'", fixed = TRUE)
  expect_match(out, "2 nodes are on host 'testhost1'", fixed = TRUE)
  expect_identical(isNodeAlive(cl), rep(TRUE, 5L))
  expect_identical(killNode(cl), rep(TRUE, 5L))
  expect_true(wait_for(function() identical(isNodeAlive(cl), rep(FALSE, 5L)), timeout = 10))
  cl <- cloneNode(cl)
  expect_identical(isNodeAlive(cl), rep(TRUE, 5L))
  expect_equal(unlist(parallel::parLapply(cl, 1:10, sqrt)), sqrt(1:10))
  remote <- cluster_pids(cl)[c(2, 5)]
  expect_true(all(remote %in% remote_r_pids("testhost1")))

  # No worker is left on the remote host, and the connection is closed with the last node.
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(remote %in% remote_r_pids("testhost1")), timeout = 10))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("sixteen workers start at once over one held connection", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster(rep("testhost2", 16))
  expect_length(cl, 16L)
  expect_identical(isNodeAlive(cl), rep(TRUE, 16L))
  conns <- parallelly:::backend_ssh_connections()
  expect_identical(nrow(conns), 1L)
  expect_identical(conns$tunnels, 16L)
  expect_length(unique(unlist(parallel::clusterEvalQ(cl, Sys.getpid()))), 16L)
  expect_equal(unlist(parallel::parLapply(cl, 1:64, sqrt)), sqrt(1:64))
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(pids %in% remote_r_pids("testhost2")), timeout = 10))
})

test_that("a local process with the PID of a remote worker is never touched", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  victim <- local_cluster(1)
  local_pid <- node_pid(victim[[1]])
  remote <- local_cluster("testhost1")
  # Make the next process in testhost1's PID namespace get the local worker's PID: the
  # clone's launch forks exactly one process there (the worker's subshell).
  remote_exec("testhost1", sprintf("echo %d > /proc/sys/kernel/ns_last_pid", local_pid - 1L))
  withr::defer(remote_exec("testhost1", "echo 1000 > /proc/sys/kernel/ns_last_pid"))
  remote[[1]] <- cloneNode(remote[[1]])
  if (node_pid(remote[[1]]) != local_pid) skip("could not give a remote worker the PID of a local one")
  expect_true(isNodeAlive(remote[[1]]))
  expect_true(killNode(remote[[1]], signal = tools::SIGKILL))
  expect_true(wait_for(function() identical(isNodeAlive(remote[[1]]), FALSE), timeout = 10))
  # The local process with that PID is untouched and still reads as alive.
  expect_true(process_running(local_pid))
  expect_true(isNodeAlive(victim[[1]]))
  expect_identical(parallel::clusterEvalQ(victim, Sys.getpid())[[1]], local_pid)
})

test_that("no ssh program is ever run", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  bin <- withr::local_tempdir()
  record <- file.path(bin, "calls")
  for (name in c("ssh", "plink")) {
    writeLines(c("#!/bin/sh", sprintf("echo \"$0 $@\" >> %s", record), "exit 255"), file.path(bin, name))
    Sys.chmod(file.path(bin, name), "755")
  }
  withr::local_envvar(PATH = paste(bin, Sys.getenv("PATH"), sep = ":"))
  cl <- local_cluster(c("testhost1", "testhost2"))
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  expect_identical(killNode(cl[1]), TRUE)
  cl[1] <- cloneNode(cl[1])
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
  parallel::stopCluster(cl)
  expect_false(file.exists(record))
})

test_that("revtunnel = FALSE makes the worker connect to the master directly", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  cl <- local_cluster("testhost1", revtunnel = FALSE, master = "127.0.0.1")
  expect_true(isNodeAlive(cl[[1]]))
  expect_equal(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
  expect_identical(parallelly:::backend_ssh_connections()$tunnels, 0L)
})

test_that("a server that refuses reverse tunnels gives an error that says so and what to do", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  # testhost1's sshd once more, on another port, with TCP forwarding off.
  dir <- withr::local_tempdir()
  port <- freePort("random")
  conf <- readLines(file.path(hosts$dir, "sshd_config_testhost1"))
  conf <- sub("^ListenAddress .*", sprintf("ListenAddress 127.0.0.2:%d", port), conf)
  conf <- sub("^PidFile .*", sprintf("PidFile %s/sshd.pid", dir), conf)
  conf <- sub("^AllowTcpForwarding .*", "AllowTcpForwarding no", conf)
  # This sshd runs on this machine, not in testhost1's namespaces: root logs in, with the
  # run's authorized_keys (ptest's HOME with its keys exists only inside the test hosts).
  conf <- sub("^AuthorizedKeysFile .*", paste("AuthorizedKeysFile", file.path(hosts$dir, "authorized_keys")), conf)
  conf <- sub("^PermitRootLogin .*", "PermitRootLogin prohibit-password", conf)
  writeLines(conf, file.path(dir, "sshd_config"))
  sshd <- parallelly:::backend_launch("/usr/sbin/sshd", c("-D", "-f", file.path(dir, "sshd_config"), "-E", file.path(dir, "sshd.log")))$pid
  withr::defer(parallelly:::terminate_processes(sshd))
  key <- paste(strsplit(readLines(file.path(hosts$dir, "ssh_host_ed25519_key_testhost1.pub")), " ")[[1]][1:2], collapse = " ")
  writeLines(c(readLines(hosts$known_hosts), sprintf("[127.0.0.2]:%d %s", port, key)), file.path(dir, "known_hosts"))
  writeLines(c("Host notunnel", "  HostName 127.0.0.2", paste("  Port", port), "  User root",
               paste("  IdentityFile", hosts$identity), "  IdentitiesOnly yes",
               paste("  UserKnownHostsFile", file.path(dir, "known_hosts"))), file.path(dir, "ssh_config"))
  withr::local_options(parallelly.ssh.config = file.path(dir, "ssh_config"),
                       parallelly.ssh.knownHosts = file.path(dir, "known_hosts"))
  expect_true(wait_for(function() !isTRUE(parallelly:::backend_port_is_free(port)), timeout = 10))

  err <- tryCatch(makeClusterPSOCK("notunnel", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellyError")
  expect_match(conditionMessage(err), "host 'notunnel' refused the reverse tunnel", fixed = TRUE)
  expect_match(conditionMessage(err), "AllowTcpForwarding yes", fixed = TRUE)
  expect_match(conditionMessage(err), "revtunnel = FALSE", fixed = TRUE)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  # The way out the message names works.
  cl <- local_cluster("notunnel", revtunnel = FALSE, master = "127.0.0.1")
  expect_equal(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
})

test_that("errors name the host and the cause, quickly, and leave nothing running", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  quick <- function(expr) {
    t0 <- Sys.time()
    err <- tryCatch(expr, error = function(e) e)
    expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 15)
    err
  }
  # Nothing listens there (test hosts take 127.0.0.2 and up, one each): refused.
  err <- quick(makeClusterPSOCK("127.0.0.253", rshopts = c("-p", hosts$hosts$port[1]), connectTimeout = 10))
  expect_s3_class(err, "parallellyConnectError")
  expect_match(conditionMessage(err), "127.0.0.253", fixed = TRUE)
  # A name that does not resolve.
  err <- quick(makeClusterPSOCK("no-such-host.invalid", connectTimeout = 10))
  expect_s3_class(err, "parallellyDnsError")
  expect_match(conditionMessage(err), "no-such-host.invalid", fixed = TRUE)

  # A key the server does not accept.
  config <- withr::local_tempfile()
  writeLines(c("Host wrongkey", "  HostName 127.0.0.2", paste("  Port", hosts$hosts$port[1]), paste("  User", hosts$hosts$user[1]),
               paste("  IdentityFile", hosts$identity_other), "  IdentitiesOnly yes",
               paste("  UserKnownHostsFile", hosts$known_hosts)), config)
  withr::local_options(parallelly.ssh.config = config)
  err <- quick(makeClusterPSOCK("wrongkey", connectTimeout = 10))
  expect_s3_class(err, "parallellyAuthError")
  expect_match(conditionMessage(err), "wrongkey", fixed = TRUE)
  expect_false(grepl("BEGIN OPENSSH PRIVATE KEY", conditionMessage(err)))
})

test_that("keys held by ssh-agent authenticate; without the agent the same login is refused", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if(!nzchar(Sys.which("ssh-agent")) || !nzchar(Sys.which("ssh-add")), "ssh-agent not installed")
  local_ssh_env(hosts)
  # A host alias of its own (so no held connection is reused) whose only identity file is
  # a key the server refuses: a login can only succeed through the agent.
  config <- withr::local_tempfile()
  writeLines(c("Host viaagent", "  HostName 127.0.0.2", paste("  Port", hosts$hosts$port[1]), paste("  User", hosts$hosts$user[1]),
               paste("  IdentityFile", hosts$identity_other),
               paste("  UserKnownHostsFile", hosts$known_hosts)), config)
  withr::local_options(parallelly.ssh.config = config)
  withr::local_envvar(SSH_AUTH_SOCK = NA)
  err <- tryCatch(makeClusterPSOCK("viaagent", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellyAuthError")

  sock <- file.path(withr::local_tempdir(), "agent.sock")
  agent <- parallelly:::backend_launch(Sys.which("ssh-agent"), c("-D", "-a", sock), capture = TRUE)$pid
  withr::defer(parallelly:::terminate_processes(agent))
  expect_true(wait_for(function() file.exists(sock), timeout = 10))
  withr::local_envvar(SSH_AUTH_SOCK = sock)
  expect_identical(system2("ssh-add", shQuote(hosts$identity), stdout = FALSE, stderr = FALSE), 0L)
  cl <- local_cluster("viaagent")
  expect_identical(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])[[1]], "testhost1")
  expect_true(isNodeAlive(cl[[1]]))
})

test_that("a connection uses SSH_AUTH_SOCK as it was when asked for, whatever R does meanwhile", {
  # The connection is made on a thread of the backend while R runs on; that thread reads
  # no environment variable (R's Sys.setenv() may change them under it): the values are
  # read on R's thread when the connection is asked for.
  hosts <- skip_if_no_ssh_hosts()
  skip_if(!nzchar(Sys.which("ssh-agent")) || !nzchar(Sys.which("ssh-add")), "ssh-agent not installed")
  local_ssh_env(hosts)
  config <- withr::local_tempfile()
  writeLines(c("Host viaagent2", "  HostName 127.0.0.2", paste("  Port", hosts$hosts$port[1]), paste("  User", hosts$hosts$user[1]),
               paste("  IdentityFile", hosts$identity_other),
               paste("  UserKnownHostsFile", hosts$known_hosts)), config)
  sock <- file.path(withr::local_tempdir(), "agent.sock")
  agent <- parallelly:::backend_launch(Sys.which("ssh-agent"), c("-D", "-a", sock), capture = TRUE)$pid
  withr::defer(parallelly:::terminate_processes(agent))
  expect_true(wait_for(function() file.exists(sock), timeout = 10))
  withr::local_envvar(SSH_AUTH_SOCK = sock)
  expect_identical(system2("ssh-add", shQuote(hosts$identity), stdout = FALSE, stderr = FALSE), 0L)
  res <- parallelly:::backend_ssh_connect("viaagent2", config = config, timeout = 20, wait = FALSE)
  # Gone before the thread has finished its handshake (tens of milliseconds): only the
  # agent holds a key the server takes.
  Sys.unsetenv("SSH_AUTH_SOCK")
  key <- parallelly:::backend_ssh_wait(res$ticket, 25, "viaagent2", "connecting")
  expect_type(key, "character")
  expect_true(parallelly:::backend_ssh_close(key))
})

test_that("host keys are checked: a changed key is refused, an unknown one needs consent", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  lines <- readLines(hosts$known_hosts)
  port <- hosts$hosts$port[1]
  key_of <- function(address) sub("^\\S+ ", "", grep(sprintf("^\\[%s\\]:%s ", address, port), lines, value = TRUE)[1])
  # testhost1 recorded with testhost2's key: a changed host key.
  changed <- withr::local_tempfile()
  writeLines(sprintf("[127.0.0.2]:%s %s", port, key_of("127.0.0.3")), changed)
  withr::local_options(parallelly.ssh.knownHosts = changed)
  err <- tryCatch(makeClusterPSOCK("testhost1", connectTimeout = 10), error = function(e) e)
  expect_s3_class(err, "parallellyHostKeyError")
  expect_match(conditionMessage(err), "host key", fixed = TRUE)
  expect_match(conditionMessage(err), "testhost1", fixed = TRUE)

  # Unknown host: refused, with a hint; accepted (and recorded) when asked for.
  empty <- withr::local_tempfile()
  file.create(empty)
  withr::local_options(parallelly.ssh.knownHosts = empty)
  err <- tryCatch(makeClusterPSOCK("testhost1", connectTimeout = 10), error = function(e) e)
  expect_s3_class(err, "parallellyHostKeyError")
  expect_match(conditionMessage(err), "parallelly.ssh.acceptNewHostKeys", fixed = TRUE)
  withr::local_options(parallelly.ssh.acceptNewHostKeys = TRUE)
  cl <- local_cluster("testhost1")
  expect_true(isNodeAlive(cl[[1]]))
  # Recorded as OpenSSH would (hashed, under Debian's HashKnownHosts yes): ssh-keygen finds it.
  skip_if(!nzchar(Sys.which("ssh-keygen")), "ssh-keygen not installed")
  found <- suppressWarnings(system2("ssh-keygen", c("-F", shQuote(sprintf("[127.0.0.2]:%s", port)), "-f", shQuote(empty)),
                                    stdout = TRUE, stderr = TRUE))
  expect_null(attr(found, "status"))
})

test_that("a missing remote Rscript is reported at once, naming the host", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  t0 <- Sys.time()
  err <- tryCatch(makeClusterPSOCK("testhost1", rscript = "/no/such/Rscript"), error = function(e) e)
  expect_s3_class(err, "parallellyLaunchError")
  expect_match(conditionMessage(err), "testhost1", fixed = TRUE)
  expect_match(conditionMessage(err), "/no/such/Rscript", fixed = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 15)
})

test_that("a remote worker that dies during setup fails it at once, with its output", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  err <- tryCatch(makeClusterPSOCK("testhost1", rscript_startup = "cat('remote boom\\n'); quit(status = 4)",
                                   outfile = NULL, connectTimeout = 60),
                  error = function(e) e)
  expect_s3_class(err, "parallellyLaunchError")
  expect_match(conditionMessage(err), "remote machine 'testhost1'", fixed = TRUE)
  expect_match(conditionMessage(err), "remote boom", fixed = TRUE)
})

test_that("a frozen host gives NA with a warning within the timeout, and works again later", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_shared_pidns(hosts)
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost2", "localhost"))
  # Every sshd process of testhost2 (its listener and our session), seen from here.
  sshd <- ssh_host_sshd_pids("testhost2", hosts)
  expect_gte(length(sshd), 2L)
  tools::pskill(sshd, tools::SIGSTOP)
  withr::defer(tools::pskill(sshd, tools::SIGCONT))
  t0 <- Sys.time()
  expect_warning(alive <- isNodeAlive(cl, timeout = 2), "testhost2")
  expect_identical(alive, c(NA, TRUE))
  expect_warning(killed <- killNode(cl[1], timeout = 2), "testhost2")
  expect_identical(killed, NA)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 10)
  tools::pskill(sshd, tools::SIGCONT)
  expect_true(wait_for(function() identical(suppressWarnings(isNodeAlive(cl, timeout = 2)), c(TRUE, TRUE)), timeout = 15))
  expect_equal(unlist(parallel::clusterEvalQ(cl, 1L)), c(1L, 1L))
})

test_that("an explicit rshcmd uses that external SSH client, the reference's way", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if(!nzchar(Sys.which("ssh")), "no ssh client installed")
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "testhost1"), rshcmd = "ssh",
                      rshopts = c("-F", hosts$config, "-o", "BatchMode=yes"))
  expect_identical(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])), rep("testhost1", 2L))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  expect_identical(isNodeAlive(cl), c(TRUE, TRUE))
  pid <- node_pid(cl[[1]])
  expect_true(killNode(cl[[1]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(FALSE, TRUE)), timeout = 10))
  cl[[1]] <- cloneNode(cl[[1]])
  expect_equal(unlist(parallel::parLapply(cl, 1:4, sqrt)), sqrt(1:4))
  pids <- cluster_pids(cl)
  parallel::stopCluster(cl)
  expect_true(wait_for(function() !any(pids %in% remote_r_pids("testhost1")), timeout = 10))
  # A refused login fails at once (not after connectTimeout), with what the client said.
  config <- withr::local_tempfile()
  writeLines(c("Host wrongkey", "  HostName 127.0.0.2", paste("  Port", hosts$hosts$port[1]), paste("  User", hosts$hosts$user[1]),
               paste("  IdentityFile", hosts$identity_other), "  IdentitiesOnly yes",
               paste("  UserKnownHostsFile", hosts$known_hosts)), config)
  t0 <- Sys.time()
  err <- tryCatch(makeClusterPSOCK("wrongkey", rshcmd = "ssh", connectTimeout = 60,
                                   rshopts = c("-F", config, "-o", "BatchMode=yes")),
                  error = function(e) e)
  expect_s3_class(err, "parallellyLaunchError")
  expect_match(conditionMessage(err), "Permission denied", fixed = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 30)
})

test_that("future runs on a cluster with a remote worker", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_installed("future")
  local_ssh_env(hosts)
  cl <- local_cluster(c("testhost1", "localhost"))
  oplan <- future::plan(future::cluster, workers = cl)
  on.exit(future::plan(oplan), add = TRUE)
  fs <- lapply(1:4, function(i) future::future(Sys.info()[["nodename"]]))
  expect_true("testhost1" %in% unlist(future::value(fs)))
})

test_that("summary() of remote workers: resource use, and why one died", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  withr::local_options(useFancyQuotes = FALSE)
  cl <- local_cluster(c("testhost1", "testhost1"))
  s <- summary(cl)
  expect_identical(s$alive, c(TRUE, TRUE))
  expect_true(all(s$rss > 10 * 2^20))
  expect_true(all(s$cpu > 0))
  expect_true(all(s$uptime >= 0 & s$uptime < 600))
  logs <- vapply(cl, function(node) attr(node, "process")$log, "")
  parallel::clusterEvalQ(cl[2], cat("last words from remote worker 2\n"))
  expect_identical(killNode(cl[[2]], signal = tools::SIGKILL), TRUE)
  expect_true(wait_for(function() identical(isNodeAlive(cl), c(TRUE, FALSE)), timeout = 10))
  s <- summary(cl)
  expect_match(s$exit[2], "killed by signal 9 (SIGKILL)", fixed = TRUE)
  expect_true(is.na(s$exit[1]))
  out <- paste(capture.output(print(cl[[2]])), collapse = "\n")
  expect_match(out, "on remote host 'testhost1' .* The worker is no longer running: killed by signal 9")
  # What the worker wrote is kept in its log on the host, and shown.
  expect_match(out, "Its last output was:\n.*last words from remote worker 2")
  parallel:::sendCall(cl[[1]], fun = function() quit(save = "no", status = 5), args = list())
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE), timeout = 10))
  expect_identical(summary(cl)$exit[1], "exit status 5")
  # Stopping the cluster removes the logs of its workers, dead or alive.
  expect_true(all(nzchar(logs)))
  expect_identical(remote_exec("testhost1", sprintf("ls %s 2>/dev/null | wc -l", paste(logs, collapse = " "))), "2")
  parallel::stopCluster(cl)
  expect_identical(remote_exec("testhost1", sprintf("ls %s 2>/dev/null | wc -l", paste(logs, collapse = " "))), "0")
})
