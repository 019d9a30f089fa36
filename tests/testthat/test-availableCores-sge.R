# availableCores(methods = "SGE"): this machine's slots in PE_HOSTFILE (a multi-host job's
# NSLOTS counts every host's), as the reference's development line does; NSLOTS where the
# file is unset or missing, or does not list this machine. In a real job:
# test-gridengine.R.

test_that("SGE: this machine's slots in PE_HOSTFILE, not the job's NSLOTS", {
  local_clean_scheduler_env(character(0))
  me <- Sys.info()[["nodename"]]
  hostfile <- withr::local_tempfile(lines = c(
    "other1.example.org 5 all.q@other1.example.org UNDEFINED",
    sprintf("%s.example.org 3 all.q@%s.example.org UNDEFINED", me, me),
    sprintf("%s 1 long.q@%s UNDEFINED", toupper(me), me)
  ))
  withr::local_envvar(PE_HOSTFILE = hostfile, NSLOTS = "9")
  # This machine: 3 slots in all.q and 1 in long.q, under its name with a domain and in
  # upper case.
  expect_identical(availableCores(methods = "SGE", which = "all")[["SGE"]], 4L)
  # The workers are every host's, in the file's order.
  expect_identical(availableWorkers(methods = "SGE"),
                   c(rep("other1.example.org", 5L), rep(sprintf("%s.example.org", me), 3L), toupper(me)))
})

test_that("SGE: NSLOTS where PE_HOSTFILE is unset, missing or does not list this machine", {
  local_clean_scheduler_env(character(0))
  withr::local_envvar(NSLOTS = "6")
  expect_identical(availableCores(methods = "SGE", which = "all")[["SGE"]], 6L)
  withr::local_envvar(PE_HOSTFILE = tempfile())
  expect_identical(availableCores(methods = "SGE", which = "all")[["SGE"]], 6L)
  hostfile <- withr::local_tempfile(lines = "elsewhere 2 all.q@elsewhere UNDEFINED")
  withr::local_envvar(PE_HOSTFILE = hostfile)
  expect_identical(availableCores(methods = "SGE", which = "all")[["SGE"]], 6L)
})
