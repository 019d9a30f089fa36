# In CI (the environment variable CI is set, as .ci/run's caller does) a test host or a
# scheduler that cannot start is a failure, not a skip; on a developer's machine without root
# or sshd the tests that need it skip with the reason.
skip_unavailable <- function(what, why) {
  msg <- paste0(what, " unavailable: ", why)
  if (nzchar(Sys.getenv("CI"))) stop(msg, " (in CI this fails the test)", call. = FALSE)
  testthat::skip(msg)
}
