# future.batchtools on the real Slurm test cluster (helper-slurm.R): futures run as Slurm jobs
# through sbatch, and those jobs load the package under test.

test_that("batchtools_slurm futures run as Slurm jobs that load this package", {
  skip_if_no_slurm()
  skip_if_not_installed("future.batchtools")
  skip_if_not_installed("batchtools")
  withr::local_envvar(slurm_env())
  dir <- withr::local_tempdir("slurm-batchtools-")
  template <- file.path(dir, "slurm.tmpl")
  # A template of our own; --mem-per-cpu needs the nodes' RealMemory.
  writeLines(c(
    "#!/bin/sh",
    "#SBATCH --job-name=<%= job.name %>",
    "#SBATCH --output=<%= log.file %>",
    "#SBATCH --error=<%= log.file %>",
    "#SBATCH --ntasks=1",
    "#SBATCH --cpus-per-task=<%= if (is.null(resources$ncpus)) 1L else resources$ncpus %>",
    "#SBATCH --mem-per-cpu=100",
    "#SBATCH --time=5",
    sprintf("%s -e 'batchtools::doJobCollection(\"<%%= uri %%>\")'",
            shQuote(file.path(R.home("bin"), "Rscript")))
  ), template)
  # Registries in our temporary directory (the default is .future in the working directory).
  withr::local_options(future.wait.interval = 0.05, future.wait.alpha = 1.05,
                       future.cache.path = file.path(dir, "future"))
  oplan <- future::plan(future.batchtools::batchtools_slurm, template = template,
                        resources = list(ncpus = 2L))
  withr::defer(future::plan(oplan))

  probe <- function(x) {
    list(x = x, pid = Sys.getpid(),
         version = as.character(utils::packageVersion("parallelly")),
         lib = dirname(find.package("parallelly")),
         job = Sys.getenv(c("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_CPUS_PER_TASK")),
         cores = unname(parallelly::availableCores(methods = "Slurm")))
  }
  fs <- lapply(1:2, function(i) future::future(probe(i), globals = list(probe = probe, i = i)))
  res <- future::value(fs)

  expect_identical(vapply(res, `[[`, 1L, "x"), 1:2)
  for (r in res) {
    expect_identical(r$version, "2.0.0")
    expect_identical(normalizePath(r$lib), normalizePath(dirname(find.package("parallelly"))))
    expect_match(r$job[["SLURM_JOB_ID"]], "^[0-9]+$")
    expect_true(r$job[["SLURMD_NODENAME"]] %in% c("n3", "n4", "n5"))
    expect_identical(r$job[["SLURM_CPUS_PER_TASK"]], "2")
    expect_identical(r$cores, 2L)
    expect_false(r$pid == Sys.getpid())
  }
  # Two jobs, not one process for both.
  expect_false(identical(res[[1]]$job[["SLURM_JOB_ID"]], res[[2]]$job[["SLURM_JOB_ID"]]))
})
