# Eight SSH test hosts with our package installed, so that each runs a fork server
# (testhost8..15 of a set of hosts of their own, started once per run beside the suite's,
# which have the package on testhost3 only): many hosts x forked workers.
fork_hosts <- sprintf("testhost%d", 8:15)

skip_if_no_fork_hosts <- function() {
  skip_if_no_ssh_hosts(9)
  hosts <- tryCatch(ssh_test_hosts_variant("fork8", c(SSH_TEST_HOSTS_PACKAGE = find.package("parallelly"),
                                                      SSH_TEST_HOSTS_PACKAGE_HOSTS = paste(8:15, collapse = " ")), n = 15L),
                    error = function(e) e)
  if (inherits(hosts, "error")) skip_unavailable("SSH test hosts with our package", conditionMessage(hosts))
  skip_if_shared_pidns(hosts)
  hosts
}
