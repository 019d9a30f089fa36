# Never worse than the reference over SSH: the rshopts that scripts written for the reference
# pass to `ssh` work with the built-in client, and a host whose setup the built-in client
# cannot honour (ProxyCommand, a certificate, a password, a ControlMaster socket, an option
# it lacks) uses OpenSSH's `ssh` by itself -- the same cluster works with the reference
# (parallelly 1.34, in a subprocess) and with ours. The user's algorithm policy holds.

# A config file for `alias` (lines `body`), beside the hosts' own config; ours reads it
# through option parallelly.ssh.config, the reference through rshopts -F.
local_alias_config <- function(hosts, alias, body, envir = parent.frame()) {
  config <- withr::local_tempfile(.local_envir = envir, fileext = ".conf")
  writeLines(c(paste("Host", alias), paste0("  ", body), "", readLines(hosts$config)), config)
  withr::local_options(parallelly.ssh.config = config, .local_envir = envir)
  withr::local_envvar(R_PARALLELLY_SSH_KNOWN_HOSTS = NA, .local_envir = envir)
  config
}

# The usual lines of a test host's config entry (host #i of `hosts`) for an alias.
host_lines <- function(hosts, i = 1L, identity = hosts$identity) {
  c(paste("HostName", hosts$hosts$address[i]), paste("Port", hosts$hosts$port[i]),
    paste("User", hosts$hosts$user[i]), paste("IdentityFile", identity), "IdentitiesOnly yes",
    paste("UserKnownHostsFile", hosts$known_hosts), "StrictHostKeyChecking yes")
}

# A two-worker cluster on `alias` with ours: the workers' host names and summary()'s client.
ours_on <- function(alias, ...) {
  cl <- makeClusterPSOCK(rep(alias, 2), connectTimeout = 30, ...)
  on.exit(parallel::stopCluster(cl))
  list(nodename = unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])),
       client = summary(cl)$client)
}

# The same with the reference (rshopts -F config, as its users would write it).
reference_on <- function(alias, config, env = character(), rshopts = character()) {
  code <- sprintf(paste(
    "cl <- makeClusterPSOCK(rep(%s, 2), rshopts = %s, connectTimeout = 30)",
    "cat('NODENAME', unlist(parallel::clusterEvalQ(cl, Sys.info()[['nodename']])), '\\n')",
    "parallel::stopCluster(cl)", sep = "\n"), deparse(alias), deparse(c("-F", config, rshopts)))
  out <- run_reference(code, env = env)
  if (is.null(out)) testthat::skip("the reference package is not installed")
  line <- grep("^NODENAME ", out, value = TRUE)
  if (length(line) != 1L) stop("the reference failed:\n", paste(out, collapse = "\n"))
  strsplit(sub("^NODENAME ", "", trimws(line)), " ")[[1L]]
}

test_that("rshopts written for the reference's ssh work with the built-in client", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  # An alias without an identity: only rshopts' -i gives one; -J goes through testhost2.
  local_alias_config(hosts, "bare", c(paste("HostName", hosts$hosts$address[1]), paste("Port", hosts$hosts$port[1]),
                                      paste("User", hosts$hosts$user[1]), paste("UserKnownHostsFile", hosts$known_hosts)))
  opts <- c("-i", hosts$identity, "-qTC", "-o", "ServerAliveInterval=60", "-o ServerAliveCountMax=3",
            "-oConnectTimeout=5", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-v", "-x", "-a", "-J", "testhost2")
  res <- ours_on("bare", rshopts = opts)
  expect_identical(res$nodename, rep("testhost1", 2))
  expect_identical(res$client, rep("built-in", 2))
  # The -i key is what logs in: another key refused, none at all refused.
  err <- tryCatch(makeClusterPSOCK("bare", rshopts = c("-i", hosts$identity_other, "-o", "IdentitiesOnly=yes"),
                                   connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellyAuthError")
  expect_match(conditionMessage(err), hosts$identity_other, fixed = TRUE)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("a ProxyCommand host uses OpenSSH's ssh, as with the reference", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if_not(file.exists("/usr/bin/ssh"), "no OpenSSH client")
  config <- local_alias_config(hosts, "proxied", c(host_lines(hosts, 1L),
    sprintf("ProxyCommand /usr/bin/ssh -F %s -W %%h:%%p testhost2", hosts$config)))
  expect_identical(reference_on("proxied", config), rep("testhost1", 2))
  res <- ours_on("proxied")
  expect_identical(res$nodename, rep("testhost1", 2))
  expect_identical(res$client, rep("ssh", 2))
  # Chosen explicitly, the built-in client refuses at once, naming the directive.
  withr::local_options(parallelly.ssh.client = "built-in")
  err <- tryCatch(makeClusterPSOCK("proxied", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellySshError")
  expect_match(conditionMessage(err), "host 'proxied'.*ProxyCommand.*chosen with option parallelly.ssh.client")
  err <- tryCatch(makeClusterPSOCK("proxied", rshcmd = "<ssh>", connectTimeout = 10), error = identity)
  expect_match(conditionMessage(err), "rshcmd = \"<ssh>\"", fixed = TRUE)
})

test_that("a certificate login uses OpenSSH's ssh, as with the reference", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if_not(file.exists("/usr/bin/ssh"), "no OpenSSH client")
  cert <- file.path(hosts$dir, "id_cert-cert.pub")
  skip_if_not(file.exists(cert), "the test hosts have no user certificate")
  config <- local_alias_config(hosts, "withcert", c(host_lines(hosts, 1L, identity = file.path(hosts$dir, "id_cert")),
                                                     paste("CertificateFile", cert)))
  expect_identical(reference_on("withcert", config), rep("testhost1", 2))
  res <- ours_on("withcert")
  expect_identical(res$nodename, rep("testhost1", 2))
  expect_identical(res$client, rep("ssh", 2))
})

test_that("a ControlMaster socket is used through OpenSSH's ssh, as with the reference", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_if_not(file.exists("/usr/bin/ssh"), "no OpenSSH client")
  sockets <- withr::local_tempdir()
  config <- local_alias_config(hosts, "shared", c(host_lines(hosts, 1L), "ControlMaster auto",
                                                   paste0("ControlPath ", sockets, "/%C")))
  expect_identical(reference_on("shared", config), rep("testhost1", 2))
  cl <- makeClusterPSOCK(rep("shared", 2), connectTimeout = 30)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  expect_identical(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])), rep("testhost1", 2))
  expect_identical(summary(cl)$client, rep("ssh", 2))
  # The first client is the master: its socket is there while the workers run.
  expect_length(list.files(sockets), 1L)
  parallel::stopCluster(cl)
  on.exit()
  expect_true(wait_for_ssh(function() length(list.files(sockets)) == 0L, timeout = 10))
})

test_that("a password-only host (SSH_ASKPASS) uses OpenSSH's ssh, as with the reference", {
  skip_if_no_ssh_hosts()
  skip_if_not(file.exists("/usr/bin/ssh"), "no OpenSSH client")
  password <- "parallelly-test-pw-7f3a"
  pw <- ssh_test_hosts_variant("password", c(SSH_TEST_HOSTS_USER = "ptestpw", SSH_TEST_HOSTS_PASSWORD = password,
    SSH_TEST_HOSTS_SSHD_OPTIONS = "PasswordAuthentication yes\nAuthenticationMethods password"))
  skip_if_not_realistic_hosts(pw)
  askpass <- withr::local_tempfile(fileext = ".sh")
  writeLines(c("#!/bin/sh", sprintf("echo '%s'", password)), askpass)
  Sys.chmod(askpass, "0700")
  env <- c(SSH_ASKPASS = askpass, SSH_ASKPASS_REQUIRE = "force", DISPLAY = "")
  withr::local_envvar(env)
  config <- local_alias_config(pw, "pwhost", host_lines(pw, 1L))
  expect_identical(reference_on("pwhost", config, env = env), rep("testhost1", 2))
  res <- ours_on("pwhost")
  expect_identical(res$nodename, rep("testhost1", 2))
  expect_identical(res$client, rep("ssh", 2))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  # Chosen explicitly, the built-in client says what the host wants.
  err <- tryCatch(makeClusterPSOCK("pwhost", rshcmd = "<ssh>", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellyAuthPromptError")
  expect_match(conditionMessage(err), "accepts: password", fixed = TRUE)
})

test_that("Ciphers from the ssh config and rshopts are obeyed (a host with one cipher)", {
  skip_if_no_ssh_hosts()
  one <- ssh_test_hosts_variant("onecipher", c(SSH_TEST_HOSTS_SSHD_OPTIONS = "Ciphers aes256-ctr"))
  withr::local_options(parallelly.ssh.client = "built-in")
  config <- local_alias_config(one, "strict", c(host_lines(one, 1L), "Ciphers aes128-ctr,aes192-ctr"))
  # The config allows only ciphers the host lacks: no connection (libssh2's own choice would connect).
  err <- tryCatch(makeClusterPSOCK("strict", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellySshError")
  expect_match(conditionMessage(err), "handshake", fixed = TRUE)
  if (!is.null(run_reference("NULL"))) {
    out <- run_reference(sprintf("makeClusterPSOCK(%s, rshopts = %s, connectTimeout = 15)", deparse("strict"),
                                 deparse(c("-F", config))))
    expect_false(is.null(attr(out, "status")))
    expect_match(paste(out, collapse = "\n"), "no matching cipher", fixed = TRUE)
  }
  # With the "+" form the host's cipher stays allowed; -c on the command line wins over the config.
  res <- ours_on("strict", rshopts = c("-c", "aes256-ctr"))
  expect_identical(res$client, rep("built-in", 2))
  local_alias_config(one, "plus", c(host_lines(one, 1L), "Ciphers -aes256*"))
  expect_error(makeClusterPSOCK("plus", connectTimeout = 10), "handshake")
  local_alias_config(one, "plus", c(host_lines(one, 1L), "Ciphers ^aes256-ctr"))
  expect_identical(ours_on("plus")$client, rep("built-in", 2))
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("a host that offers only algorithms the built-in client lacks uses OpenSSH's ssh (a post-quantum KEX only)", {
  skip_if_no_ssh_hosts()
  skip_if_not(nzchar(Sys.which("ssh")), "no OpenSSH client")
  # sntrup761x25519-sha512: in OpenSSH's default KexAlgorithms, not in libssh2.
  pq <- ssh_test_hosts_variant("pqkex", c(SSH_TEST_HOSTS_SSHD_OPTIONS = "KexAlgorithms sntrup761x25519-sha512@openssh.com"))
  local_alias_config(pq, "pq", host_lines(pq, 1L))
  res <- ours_on("pq")
  expect_identical(res$client, rep("ssh", 2))
  # Chosen explicitly, the built-in client says what it lacks.
  withr::local_options(parallelly.ssh.client = "built-in")
  err <- tryCatch(makeClusterPSOCK("pq", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellyNoCommonAlgorithmError")
  expect_match(conditionMessage(err), "handshake with host 'pq'.*KexAlgorithms [^;]*sntrup761x25519-sha512@openssh.com")
  # A policy that allows nothing the built-in client lacks: its handshake error stays.
  withr::local_options(parallelly.ssh.client = NULL)
  local_alias_config(pq, "pq2", c(host_lines(pq, 1L), "KexAlgorithms curve25519-sha256", "Ciphers aes256-ctr",
                                  "MACs hmac-sha2-256", "HostKeyAlgorithms ssh-ed25519"))
  err <- tryCatch(makeClusterPSOCK("pq2", connectTimeout = 10), error = identity)
  expect_s3_class(err, "parallellySshError")
  expect_false(inherits(err, "parallellyNoCommonAlgorithmError"))
  expect_match(conditionMessage(err), "handshake", fixed = TRUE)
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
})

test_that("a host known by one of its key types is found (host keys ordered by known_hosts)", {
  hosts <- skip_if_no_ssh_hosts()
  ecdsa <- file.path(hosts$dir, "ssh_host_ecdsa_key_testhost2.pub")
  skip_if_not(file.exists(ecdsa), "testhost2 has no ECDSA host key")
  withr::local_options(parallelly.ssh.client = "built-in")
  entries <- grep(sprintf("^\\[%s\\]:%d ", hosts$hosts$address[2], hosts$hosts$port[2]), readLines(hosts$known_hosts), value = TRUE)
  for (type in c("ssh-ed25519", "ecdsa-sha2-nistp256")) {
    known <- withr::local_tempfile()
    writeLines(grep(paste0(" ", type, " "), entries, value = TRUE, fixed = TRUE), known)
    expect_length(readLines(known), 1L)
    config <- local_alias_config(hosts, "twokeys", c(host_lines(hosts, 2L)[-6], paste("UserKnownHostsFile", known)))
    res <- ours_on("twokeys")
    expect_identical(res$nodename, rep("testhost2", 2), info = type)
  }
})

test_that("rshopts are read as OpenSSH reads them, and decide the client of a host", {
  home <- withr::local_tempdir()
  withr::local_envvar(HOME = home, R_PARALLELLY_SSH_CONFIG = NA, R_PARALLELLY_SSH_CLIENT = NA)
  withr::local_options(parallelly.ssh.config = file.path(home, "none"), parallelly.ssh.client = NULL)
  opts <- function(...) makeNodePSOCK("remote.example.org", port = 1234L, action = "options", ...)
  o <- opts(rshopts = c("-i ~/.ssh/id_work", "-qTC", "-p2222", "-oBatchMode=yes", "-o", "ConnectTimeout=5",
                        "-J", "me@bastion:22", "-l", "alice"))
  expect_identical(o$client, "built-in")
  expect_identical(o$ssh$port, 2222L)
  expect_identical(o$ssh$user, "alice")
  expect_identical(o$ssh$command_line, c("IdentityFile ~/.ssh/id_work", "RequestTTY no", "Compression yes",
                                         "BatchMode yes", "ConnectTimeout 5", "ProxyJump me@bastion:22"))
  skip_if_not(nzchar(Sys.which("ssh")), "no OpenSSH client")
  # What the built-in client lacks: the host uses OpenSSH's ssh, with rshopts as given.
  for (x in list("-A", c("-L", "8080:localhost:80"), "-o 'ProxyCommand nc %h %p'", c("-c", "twofish-cbc"), "-X")) {
    o <- opts(rshopts = x)
    expect_identical(o$client, "ssh", info = x)
    expect_null(o$ssh)
    expect_true(nzchar(o$client_reason))
    expect_identical(o$setup_strategy, "sequential")
    # The config file the built-in client would have read goes along (-F), then rshopts.
    argv <- parallelly:::external_ssh_command(o, "true")
    words <- parallelly:::rshopts_words(x)
    expect_identical(argv[2:3], c("-F", file.path(home, "none")))
    expect_identical(tail(head(argv, -2L), length(words)), words)
  }
  expect_identical(parallelly:::rshopts_words("-o 'ProxyCommand nc %h %p' -p\\ 2 \"a b\"c"),
                   c("-o", "ProxyCommand nc %h %p", "-p 2", "a bc"))
  expect_error(opts(rshopts = "-Z"), "'-Z', which is no option of OpenSSH's ssh")
  expect_error(opts(rshopts = "word"), "'word', which is no ssh option")
  expect_error(opts(rshopts = "-o 'Port=2"), "unterminated")
  expect_error(opts(rshopts = "-i"), "'-i' without a value")
  expect_error(opts(rshopts = "-A", rshcmd = "<ssh>"), "ForwardAgent yes.*chosen with rshcmd = \"<ssh>\"")
  withr::local_options(parallelly.ssh.client = "external")
  expect_identical(opts()$client, "ssh")
  withr::local_options(parallelly.ssh.client = "sometimes")
  expect_error(opts(), "parallelly.ssh.client")
})

test_that("an ssh_config keyword OpenSSH does not know is an error naming it and the host, as ssh refuses it", {
  home <- withr::local_tempdir()
  config <- file.path(home, "config")
  withr::local_envvar(HOME = home, R_PARALLELLY_SSH_CONFIG = NA, R_PARALLELLY_SSH_CLIENT = NA)
  withr::local_options(parallelly.ssh.config = config, parallelly.ssh.client = NULL)
  opts <- function(...) makeNodePSOCK("remote.example.org", port = 1234L, action = "options", ...)
  writeLines(c("Host elsewhere", "  UseKeychain yes"), config)
  # Even in a block that does not apply (OpenSSH checks every line).
  err <- tryCatch(opts(), error = identity)
  expect_s3_class(err, "parallellySshError")
  expect_match(conditionMessage(err), "host 'remote.example.org'.*'UseKeychain yes' \\(.*config line 2\\).*'UseKeychain' is no keyword.*Bad configuration option.*IgnoreUnknown")
  writeLines(c("IgnoreUnknown UseKeychain", "Host elsewhere", "  UseKeychain yes"), config)
  expect_identical(opts()$client, "built-in")
  writeLines("Host *", config)
  expect_error(opts(rshopts = c("-o", "ServerAliveCountMaxx=3")),
               "host 'remote.example.org'.*rshopts has the ssh option '-o ServerAliveCountMaxx 3'.*'ServerAliveCountMaxx' is no keyword")
  expect_error(opts(rshopts = "-oBatchMode=sometimes"), "host 'remote.example.org'.*BatchMode to 'sometimes', which is not yes or no")
  expect_error(opts(rshopts = "-oServerAliveInterval=often"), "ServerAliveInterval to 'often'")
  # Known to OpenSSH: harmless ones are ignored, the others send the host to OpenSSH's ssh.
  expect_identical(opts(rshopts = c("-o", "SendEnv=LANG", "-o", "GSSAPIAuthentication=no"))$client, "built-in")
  skip_if_not(nzchar(Sys.which("ssh")), "no OpenSSH client")
  o <- opts(rshopts = c("-o", "VerifyHostKeyDNS=yes"))
  expect_identical(o$client, "ssh")
  expect_match(o$client_reason, "VerifyHostKeyDNS yes")
  # Chosen explicitly, an unknown keyword is the same error (OpenSSH's ssh would refuse it too).
  expect_error(opts(rshopts = "-oFoo=1", rshcmd = "<ssh>"), "'Foo' is no keyword")
})
