test_that("r_version_has_bug18119() flags R 4.0.0 to 4.1.0 only", {
  for (v in c("3.5.3", "4.1.1", "4.2.0")) {
    withr::local_envvar(R_PARALLELLY_R_VERSION = v)
    expect_false(parallelly:::r_version_has_bug18119(force = TRUE), info = v)
  }
  for (v in c("4.0.0", "4.0.5", "4.1.0")) {
    withr::local_envvar(R_PARALLELLY_R_VERSION = v)
    expect_true(parallelly:::r_version_has_bug18119(force = TRUE), info = v)
  }
  withr::local_envvar(R_PARALLELLY_R_VERSION = NA)
  expect_false(parallelly:::affected_by_bug18119())
})
