# makeClusterPSOCK(user = ): one name for all workers, or one per worker.

test_that("a user name of length one applies to every worker", {
  out <- capture.output(makeClusterPSOCK(c("n1.remote.org", "n2.remote.org", "n3.remote.org"),
                                         user = "alice", dryrun = TRUE, rshcmd = "ssh", port = 12345L))
  calls <- grep("^ *'ssh' ", out, value = TRUE)
  expect_true(all(grepl(" -l alice n[123][.]remote[.]org", calls)))
  expect_setequal(unique(sub(".* -l alice (n[123]).*", "\\1", calls)), c("n1", "n2", "n3"))
  out <- capture.output(makeClusterPSOCK(c("n1.remote.org", "n2.remote.org"), user = c("alice", "bob"),
                                         dryrun = TRUE, rshcmd = "ssh", port = 12345L))
  expect_true(any(grepl(" -l alice n1[.]remote[.]org", out)))
  expect_true(any(grepl(" -l bob n2[.]remote[.]org", out)))
  expect_error(makeClusterPSOCK(c("n1.remote.org", "n2.remote.org", "n3.remote.org"), user = c("a", "b"),
                                dryrun = TRUE, port = 12345L), "user", class = "parallellyArgumentError")
})

test_that("a user name of length one logs in on every host (SSH test hosts)", {
  hosts <- skip_if_no_ssh_hosts()
  local_ssh_env(hosts)
  user <- hosts$hosts$user[1]
  cl <- local_cluster(c("testhost1", "testhost2"), user = user, connectTimeout = 20)
  got <- unlist(parallel::clusterEvalQ(cl, c(Sys.info()[["nodename"]], Sys.info()[["effective_user"]])))
  expect_identical(got, c("testhost1", user, "testhost2", user))
})
