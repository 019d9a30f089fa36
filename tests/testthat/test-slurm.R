# availableWorkers() and availableCores() inside real Slurm allocations (helper-slurm.R).
# Nodes n3, n4, n5 have 2 CPUs (partition "small", the default); n1, n2 have 4 ("big").
# Our semantics: availableWorkers() gives each node of the job once per CPU the job has
# there (SLURM_JOB_CPUS_PER_NODE), also inside a job step; availableCores() is what the
# reference package 1.34 gives (--cpus-per-task, else the CPUs of a one-node job, else the
# tasks on the first node).

probe <- quote(list(
  workers = parallelly::availableWorkers(methods = "Slurm"),
  cores = unname(parallelly::availableCores(methods = "Slurm")),
  version = as.character(utils::packageVersion("parallelly")),
  lib = dirname(find.package("parallelly"))
))

test_that("the test cluster runs and its jobs load the package under test", {
  cluster <- skip_if_no_slurm()
  res <- slurm_cmd(c("sinfo", "-h", "-N", "-o", "%N %c %P %t"))
  expect_identical(res$status, 0L)
  expect_setequal(res$stdout, c("n1 4 big idle", "n2 4 big idle", "n3 2 small* idle",
                                "n4 2 small* idle", "n5 2 small* idle",
                                sprintf("n%d %d all idle", 1:5, c(4, 4, 2, 2, 2))))
  got <- slurm_r("salloc", "-n1", probe)
  expect_identical(got$version, as.character(utils::packageVersion("parallelly")))
  expect_identical(normalizePath(got$lib), normalizePath(dirname(find.package("parallelly"))))
})

test_that("salloc -n1 -c2: one node, two workers (as the reference)", {
  skip_if_no_slurm()
  got <- slurm_r("salloc", c("-n1", "-c2"), probe)
  expect_identical(slurm_tally(got$workers), "n3 x2")
  expect_identical(got$cores, 2L)
})

test_that("salloc -n1: one worker, availableCores() 1 (as the reference)", {
  skip_if_no_slurm()
  got <- slurm_r("salloc", "-n1", probe)
  expect_identical(slurm_tally(got$workers), "n3 x1")
  expect_identical(got$cores, 1L)
})

test_that("salloc -n3 -c2: three nodes of two CPUs, six workers (as the reference)", {
  skip_if_no_slurm()
  got <- slurm_r("salloc", c("-n3", "-c2"), probe)
  expect_identical(slurm_tally(got$workers), "n3 x2, n4 x2, n5 x2")
  expect_identical(got$cores, 2L)
})

test_that("sbatch -N2 -c3 on 4-CPU nodes: three workers per node (as the reference)", {
  skip_if_no_slurm()
  got <- slurm_r("sbatch", c("-p", "big", "-N2", "-c3"), probe)
  expect_identical(slurm_tally(got$workers), "n1 x3, n2 x3")
  expect_identical(got$cores, 3L)
})

test_that("salloc -N2 -n3 -c2 on 4-CPU nodes: 4 + 2 workers (the reference 1.34 gives 2 + 2)", {
  skip_if_no_slurm()
  # Two tasks of two CPUs on n1, one on n2: the job has 4 CPUs on n1 and 2 on n2. The
  # reference 1.34 repeats every node by --cpus-per-task and so under-counts n1; upstream
  # later counts the job's CPUs per node as we do.
  got <- slurm_r("salloc", c("-p", "big", "-N2", "-n3", "-c2"), probe)
  expect_identical(slurm_tally(got$workers), "n1 x4, n2 x2")
  expect_identical(got$cores, 2L)
})

test_that("salloc -n1 --exclusive: the whole node, two workers (as the reference)", {
  skip_if_no_slurm()
  got <- slurm_r("salloc", c("-n1", "--exclusive"), probe)
  expect_identical(slurm_tally(got$workers), "n3 x2")
})

test_that("in an srun step of a -N2 -n4 job: the job's workers, not the step's", {
  skip_if_no_slurm()
  # The one-task step has SLURM_STEP_NODELIST=n3 and SLURM_TASKS_PER_NODE=1; the job has two
  # CPUs on each of n3 and n4.
  step_probe <- bquote(c(.(probe), list(step_nodes = Sys.getenv("SLURM_STEP_NODELIST"),
                                         step_tasks = Sys.getenv("SLURM_TASKS_PER_NODE"))))
  expect_silent(got <- slurm_r("srun", c("-N2", "-n4", "--", "-N1", "-n1"), step_probe))
  expect_identical(c(got$step_nodes, got$step_tasks), c("n3", "1"))
  expect_identical(slurm_tally(got$workers), "n3 x2, n4 x2")
  # availableCores() is the task's share: the step has one task without --cpus-per-task.
  expect_identical(got$cores, 1L)
})

test_that("sbatch -N2 -n4: the batch script sees the job's workers; availableCores() its node's tasks", {
  skip_if_no_slurm()
  got <- slurm_r("sbatch", c("-N2", "-n4"), probe)
  expect_identical(slurm_tally(got$workers), "n3 x2, n4 x2")
  expect_identical(got$cores, 2L)
})

test_that("no job is left behind", {
  skip_if_no_slurm()
  ok <- FALSE
  deadline <- Sys.time() + 10
  while (Sys.time() < deadline) {
    if (length(slurm_jobs()) == 0L) { ok <- TRUE; break }
    Sys.sleep(0.1)
  }
  expect_true(ok, info = paste(slurm_jobs(), collapse = "\n"))
})
