# options(parallelly.ssh.acceptNewHostKeys = TRUE) records a new host key as OpenSSH does:
# one line appended, the host name hashed when HashKnownHosts says so (the user's config
# first, then /etc/ssh/ssh_config), in a form OpenSSH's ssh-keygen -F and our client find.

# A config with one alias for testhost1 and the given extra lines.
alias_config <- function(hosts, extra = character()) {
  config <- withr::local_tempfile(.local_envir = parent.frame())
  writeLines(c("Host recorded", "  HostName 127.0.0.2", paste("  Port", hosts$hosts$port[1]),
               paste("  User", hosts$hosts$user[1]), paste("  IdentityFile", hosts$identity),
               "  IdentitiesOnly yes", extra), config)
  config
}

keygen_finds <- function(name, file) {
  out <- suppressWarnings(system2("ssh-keygen", c("-F", shQuote(name), "-f", shQuote(file)),
                                  stdout = TRUE, stderr = TRUE))
  list(found = is.null(attr(out, "status")), lines = out)
}

# Connect once accepting new keys, then once more (a new connection) strictly.
accept_then_check <- function(config, known) {
  withr::local_options(parallelly.ssh.config = config, parallelly.ssh.knownHosts = known)
  withr::with_options(list(parallelly.ssh.acceptNewHostKeys = TRUE), {
    cl <- makeClusterPSOCK("recorded", connectTimeout = 10)
    expect_true(isNodeAlive(cl[[1]]))
    parallel::stopCluster(cl)
  })
  expect_identical(nrow(parallelly:::backend_ssh_connections()), 0L)
  withr::with_options(list(parallelly.ssh.acceptNewHostKeys = FALSE), {
    cl <- makeClusterPSOCK("recorded", connectTimeout = 10)
    expect_identical(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])[[1]], "testhost1")
    parallel::stopCluster(cl)
  })
}

test_that("HashKnownHosts yes: a hashed entry that ssh-keygen -F and our client find", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if(!nzchar(Sys.which("ssh-keygen")), "ssh-keygen not installed")
  port <- hosts$hosts$port[1]
  name <- sprintf("[127.0.0.2]:%d", port)
  known <- withr::local_tempfile()
  writeLines(c("# my hosts", "[example.invalid]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1ZXNzIHRoaXMgaXMgbm90IGEga2V5IGF0IGFsbCE="), known)
  before <- readLines(known)
  accept_then_check(alias_config(hosts, "  HashKnownHosts yes"), known)
  lines <- readLines(known)
  expect_identical(lines[1:2], before)  # the file is appended to, not rewritten
  expect_length(lines, 3L)
  expect_match(lines[3], "^\\|1\\|[A-Za-z0-9+/]{27}=\\|[A-Za-z0-9+/]{27}= ssh-ed25519 AAAA")
  expect_false(grepl("127.0.0.2", lines[3], fixed = TRUE))
  # The recorded key is testhost1's.
  hostkey <- strsplit(readLines(file.path(hosts$dir, "ssh_host_ed25519_key_testhost1.pub")), " ")[[1]][1:2]
  expect_identical(strsplit(lines[3], " ")[[1]][2:3], hostkey)
  found <- keygen_finds(name, known)
  expect_true(found$found, info = paste(found$lines, collapse = "\n"))
  expect_true(any(grepl(paste(hostkey, collapse = " "), found$lines, fixed = TRUE)))
  expect_false(keygen_finds("[127.0.0.3]:1", known)$found)
})

test_that("HashKnownHosts no: a plain entry", {
  hosts <- skip_if_no_ssh_hosts()
  port <- hosts$hosts$port[1]
  known <- withr::local_tempfile()
  accept_then_check(alias_config(hosts, "  HashKnownHosts no"), known)
  lines <- readLines(known)
  expect_length(lines, 1L)
  expect_match(lines, sprintf("^\\[127\\.0\\.0\\.2\\]:%d ssh-ed25519 AAAA", port))
  if (nzchar(Sys.which("ssh-keygen"))) expect_true(keygen_finds(sprintf("[127.0.0.2]:%d", port), known)$found)
})

test_that("without HashKnownHosts in the user's config, /etc/ssh/ssh_config decides", {
  hosts <- skip_if_no_ssh_hosts()
  system_config <- if (file.exists("/etc/ssh/ssh_config")) readLines("/etc/ssh/ssh_config") else character()
  skip_if_not(any(grepl("^\\s*HashKnownHosts\\s+yes\\s*$", system_config, ignore.case = TRUE)),
              "/etc/ssh/ssh_config does not say HashKnownHosts yes")
  known <- withr::local_tempfile()
  accept_then_check(alias_config(hosts), known)
  expect_match(readLines(known), "^\\|1\\|")
})

test_that("a host with keys of two types gets the key it proved recorded, as OpenSSH records it", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if(!nzchar(Sys.which("ssh-keygen")) || !nzchar(Sys.which("ssh")), "OpenSSH client not installed")
  ecdsa <- file.path(hosts$dir, "ssh_host_ecdsa_key_testhost2.pub")
  skip_if_not(file.exists(ecdsa), "testhost2 has no ECDSA host key")
  port <- hosts$hosts$port[2]
  config <- withr::local_tempfile()
  writeLines(c("Host two", "  HostName 127.0.0.3", paste("  Port", port), paste("  User", hosts$hosts$user[2]),
               paste("  IdentityFile", hosts$identity), "  IdentitiesOnly yes", "  HashKnownHosts yes"), config)
  known <- withr::local_tempfile()
  withr::local_options(parallelly.ssh.config = config, parallelly.ssh.knownHosts = known,
                       parallelly.ssh.acceptNewHostKeys = TRUE)
  cl <- makeClusterPSOCK("two", connectTimeout = 10)
  parallel::stopCluster(cl)
  # Only the key of the session (no unauthenticated extra handshakes); OpenSSH, with the
  # same empty known_hosts, records the same type (its preference, ed25519 first).
  lines <- readLines(known)
  expect_length(lines, 1L)
  type <- strsplit(lines, " ")[[1]][2]
  expect_identical(type, "ssh-ed25519")
  theirs <- withr::local_tempfile()
  out <- suppressWarnings(system2("ssh", c("-F", shQuote(config), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                                           "-o", paste0("UserKnownHostsFile=", shQuote(theirs)), "two", "true"),
                                  stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_identical(vapply(strsplit(readLines(theirs), " "), `[`, "", 2L), type)
  # Both clients find the host known again: ours asks for the recorded type first, as OpenSSH does.
  cl <- makeClusterPSOCK("two", connectTimeout = 10)
  parallel::stopCluster(cl)
  expect_length(readLines(known), 1L)
  out <- suppressWarnings(system2("ssh", c("-F", shQuote(config), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                                           "-o", paste0("UserKnownHostsFile=", shQuote(known)), "two", "true"),
                                  stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  # Known by its ECDSA key only (recorded by another client): found too, nothing added.
  writeLines(paste(sprintf("[127.0.0.3]:%d", port), paste(strsplit(readLines(ecdsa), " ")[[1]][1:2], collapse = " ")), known)
  withr::local_options(parallelly.ssh.acceptNewHostKeys = FALSE)
  cl <- makeClusterPSOCK("two", connectTimeout = 10)
  parallel::stopCluster(cl)
  expect_length(readLines(known), 1L)
})
