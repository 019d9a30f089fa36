# ~/.ssh/config as OpenSSH reads it: Include and Match take effect on real test hosts, and
# directives the built-in client does not implement fail at once with a clear error instead
# of being ignored; ProxyJump reaches a host that only a bastion can reach.

# A HOME of our own (relative Include paths are relative to ~/.ssh) with `files` (named by
# their path under ~/.ssh) and the main config `main`; returns the main config's path.
local_ssh_home <- function(main, files = list(), envir = parent.frame()) {
  home <- withr::local_tempdir(.local_envir = envir)
  dir.create(file.path(home, ".ssh", "conf.d"), recursive = TRUE)
  for (name in names(files)) writeLines(files[[name]], file.path(home, ".ssh", name))
  config <- file.path(home, "main_config")
  writeLines(main, config)
  withr::local_envvar(HOME = home, .local_envir = envir)
  withr::local_options(parallelly.ssh.config = config, .local_envir = envir)
  config
}

# Connect to `host` with the built-in client and run `command` there; the connection is
# closed again. Returns list(connection = what backend_ssh_connect() says, output).
run_on <- function(host, command = "hostname; id -un") {
  s <- parallelly:::resolve_ssh_settings(NULL, NULL)
  res <- parallelly:::backend_ssh_connect(host, config = s$config, known_hosts = s$known_hosts,
                                          timeout = 10)
  on.exit(parallelly:::backend_ssh_close(res$key))
  out <- parallelly:::backend_ssh_wait(parallelly:::backend_ssh_submit_script(res$key, command),
                                       10, host, "running a command")
  list(connection = res, output = strsplit(trimws(out), "\n")[[1]])
}

test_that("Port and User given only in an included file (relative, glob) take effect", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  port <- hosts$hosts$port[2]
  user <- hosts$hosts$user[2]
  main <- c("Host inc2",
            "  HostName 127.0.0.3",
            paste("  IdentityFile", hosts$identity),
            "  IdentitiesOnly yes",
            "Include conf.d/*.conf")
  local_ssh_home(main, list(
    "conf.d/10-inc2.conf" = c("Host inc2", paste("  Port", port), paste("  User", user)),
    "conf.d/20-other.conf" = c("Host *", "  Port 1"),  # later: the first value wins
    "conf.d/ignored.txt" = c("Host *", "  User nobody")  # not matched by the glob
  ))
  # A worker starts there, answers and is stopped.
  cl <- local_cluster("inc2", connectTimeout = 10)
  expect_identical(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])[[1]], "testhost2")
  expect_identical(parallel::clusterEvalQ(cl, Sys.info()[["effective_user"]])[[1]], user)
  parallel::stopCluster(cl)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)

  # Without the Include, the host's Port is unknown and connecting fails.
  writeLines(main[-5], getOption("parallelly.ssh.config"))
  expect_error(run_on("inc2"))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("Match originalhost/host/user/localuser/all, negation, and Include inside a Match block", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  port <- hosts$hosts$port[1]
  local_ssh_home(c(
    "Match originalhost viamatch,!other*",
    "  HostName 127.0.0.4",               # testhost3
    "Match host 127.0.0.4",
    "  Include match-host.conf",
    "Match host 127.0.0.4 !localuser nosuchlocaluser",
    paste("  User", hosts$hosts$user[3]),
    "Match user nosuchuser",
    "  Port 1",
    "Match all",
    paste("  IdentityFile", hosts$identity),
    "  IdentitiesOnly yes"
  ), list("match-host.conf" = paste("Port", port)))
  res <- run_on("viamatch")
  expect_identical(res$output, c("testhost3", hosts$hosts$user[3]))
  expect_identical(res$connection$hostname, "127.0.0.4")
  expect_identical(res$connection$port, port)
  # The negated originalhost pattern excludes the host: no HostName, so no such host.
  expect_error(run_on("otherviamatch"), "otherviamatch")
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("directives the built-in client does not implement fail at once when it was chosen, naming host and directive", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  # Chosen explicitly (by default such a host uses OpenSSH's ssh: test-remote-clients.R).
  withr::local_options(parallelly.ssh.client = "built-in")
  port <- hosts$hosts$port[1]
  # testhost1 is directly reachable: ignoring the HostKeyAlias would check another key.
  local_ssh_home(c(
    "Host behind",
    "  HostName 127.0.0.2",
    paste("  Port", port),
    paste("  User", hosts$hosts$user[1]),
    paste("  IdentityFile", hosts$identity),
    "  Include bastion.conf",
    "Host cmd",
    "  HostName 127.0.0.2",
    "  ProxyCommand nc %h %p",
    "Match originalhost exec* exec \"true\"",
    "  User nobody",
    "Host *",
    "  Compression yes",          # harmless: ignored
    "  ServerAliveInterval 30"
  ), list("bastion.conf" = "HostKeyAlias testhost2"))
  t0 <- Sys.time()
  err <- tryCatch(makeClusterPSOCK("behind", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellySshError")
  msg <- conditionMessage(err)
  expect_match(msg, "host 'behind'", fixed = TRUE)
  expect_match(msg, "'HostKeyAlias testhost2'", fixed = TRUE)
  expect_match(msg, "bastion.conf line 1", fixed = TRUE)
  expect_match(msg, "rshcmd = \"ssh\"", fixed = TRUE)
  expect_error(run_on("cmd"), "host 'cmd'.*'ProxyCommand nc %h %p'.*rshcmd = \"ssh\"")
  expect_error(run_on("exec1"), "host 'exec1'.*'Match exec true'.*rshcmd = \"ssh\"")
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 5)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("an Include loop is an error, not a hang", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  local_ssh_home("Include loop.conf", list("loop.conf" = "Include loop.conf"))
  expect_error(run_on("testhost1"), "host 'testhost1'.*nested more than 16 deep.*Include loop")
})

# Established TCP connections from here to addr:port (ss), or NULL without ss.
established_to <- function(addr, port) {
  if (!nzchar(Sys.which("ss"))) return(NULL)
  out <- system2("ss", c("-Htn", "state", "established", "dst", sprintf("%s:%d", addr, port)),
                 stdout = TRUE)
  out[nzchar(out)]
}

test_that("ProxyJump: a host only a bastion reaches; one jump and a chain", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if(!nzchar(Sys.which("iptables")), "iptables not installed")
  local_ssh_env(hosts)
  port <- hosts$hosts$port[2]
  user <- hosts$hosts$user[2]
  uid <- system2("id", c("-u", user), stdout = TRUE)
  # Only the hosts' login user (the sshd session processes of the bastions) may connect to
  # testhost2's sshd, and later to testhost1's; we run as root.
  only_hosts <- function(addr) c("OUTPUT", "-p", "tcp", "-d", addr, "--dport", port, "-m", "owner",
                                 "!", "--uid-owner", uid, "-j", "REJECT", "--reject-with", "tcp-reset")
  block <- function(addr) {
    env <- parent.frame()
    rule <- only_hosts(addr)
    if (system2("iptables", c("-I", rule), stdout = FALSE, stderr = FALSE) != 0L)
      skip("iptables refused the rule (no owner match here?)")
    withr::defer(system2("iptables", c("-D", rule), stdout = FALSE, stderr = FALSE),
                 envir = env)
  }
  target <- c("  HostName 127.0.0.3", paste("  Port", port), paste("  User", user),
              paste("  IdentityFile", hosts$identity), "  IdentitiesOnly yes")
  local_ssh_home(c(paste("Include", hosts$config), "Host direct", target, "Host behind", target, "  ProxyJump testhost1",
                   "Host chain", target, "  ProxyJump testhost4,testhost1"))
  block("127.0.0.3")

  # Directly: refused, at once.
  expect_error(run_on("direct"), "host 'direct'.*(refused|reset)")
  # Through the bastion: a worker starts, answers, is killed, and the cluster stops.
  cl <- local_cluster("behind", connectTimeout = 20)
  expect_identical(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])[[1]], "testhost2")
  expect_identical(isNodeAlive(cl[[1]]), TRUE)
  x <- as.raw(sample(0:255, 8e6, replace = TRUE))  # 8 MB each way through the pump
  expect_identical(parallel::clusterCall(cl, identity, x)[[1]], x)
  pid <- node_pid(cl[[1]])
  expect_true(pid %in% remote_r_pids("testhost2"))
  key <- parallelly:::backend_ssh_connections()$key
  expect_match(key, sprintf("^%s@127.0.0.3:%d via ptest@127.0.0.2:%d$", user, port, port))
  expect_true(killNode(cl[[1]]))
  expect_true(wait_for(function() identical(isNodeAlive(cl[[1]]), FALSE), timeout = 10))
  expect_false(pid %in% remote_r_pids("testhost2"))
  parallel::stopCluster(cl)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  # The jump connection goes with it.
  conns <- established_to("127.0.0.2", port)
  if (!is.null(conns))
    expect_true(wait_for(function() length(established_to("127.0.0.2", port)) == 0L, timeout = 10))

  # A chain: testhost1 too is reachable only from the hosts, so only testhost4 -> testhost1
  # -> testhost2 works.
  block("127.0.0.2")
  expect_error(run_on("behind"), "testhost1")
  res <- run_on("chain")
  expect_identical(res$output, c("testhost2", user))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("ProxyJump errors name the host and the jump host", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  local_ssh_home(c(paste("Include", hosts$config), "Host loop1", "  ProxyJump loop2", "Host loop2", "  ProxyJump loop1",
                   "Host badhop", "  ProxyJump user@:22",
                   "Host nowhere", "  HostName 127.0.0.3", "  Port 1", "  ProxyJump testhost1"))
  expect_error(run_on("loop1"), "more than 8 jump hosts")
  expect_error(run_on("badhop"), "host 'badhop'.*'user@:22' is not \\[user@\\]host\\[:port\\]")
  expect_error(run_on("nowhere"), "jump host 'testhost1' could not connect to host 'nowhere' \\(127.0.0.3:1\\)")
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})
