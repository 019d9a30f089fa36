# The Grid Engine test cluster (helper-gridengine.R) and availableWorkers()/availableCores()
# inside its jobs: one host, parallel environment `smp`.

test_that("the test cluster runs, and its jobs load the package under test", {
  cluster <- skip_if_no_gridengine()
  res <- gridengine_cmd(c("qstat", "-f", "-q", "all.q"))
  expect_identical(res$status, 0L)
  expect_true(any(grepl(sprintf("^all[.]q@%s +BIP +0/0/8 ", cluster$host), res$stdout)),
              info = paste(res$stdout, collapse = "\n"))
  got <- gridengine_r(quote(list(
    version = as.character(utils::packageVersion("parallelly")),
    lib = dirname(find.package("parallelly")),
    nslots = Sys.getenv("NSLOTS"),
    hostfile = readLines(Sys.getenv("PE_HOSTFILE"))
  )), slots = 3L)
  expect_identical(got$version, as.character(utils::packageVersion("parallelly")))
  expect_identical(normalizePath(got$lib), normalizePath(dirname(find.package("parallelly"))))
  expect_identical(got$nslots, "3")
  expect_identical(got$hostfile, sprintf("%s 3 all.q@%s UNDEFINED", cluster$host, cluster$host))
})

test_that("in a job: availableWorkers() and availableCores() are the job's slots", {
  cluster <- skip_if_no_gridengine()
  got <- gridengine_r(quote(list(
    workers = parallelly::availableWorkers(methods = "SGE"),
    cores = unname(parallelly::availableCores(methods = "SGE"))
  )), slots = 4L)
  expect_identical(got$workers, rep(cluster$host, 4L))
  expect_identical(got$cores, 4L)
})

test_that("in a job: qrsh -inherit runs a task on the job's host", {
  cluster <- skip_if_no_gridengine()
  got <- gridengine_r(quote(system2("qrsh", c("-inherit", "-nostdin", "-V", Sys.info()[["nodename"]],
                                               "printenv", "JOB_ID"), stdout = TRUE)), slots = 2L)
  expect_match(got, "^[0-9]+$")
})
