# The scheduler keywords of `rshcmd` outside and (pretended) inside jobs: "<hpc>" picks the
# launcher of the job the session runs in (SLURM_JOB_ID: "<srun>", PE_HOSTFILE: "<qrsh>",
# PJM_JOBID: "<pjrsh>"), c("<hpc>", "<ssh>") falls back to ssh outside a job, "<pjrsh>" is
# not supported yet. Launching in real jobs: test-slurm-srun.R, test-gridengine-qrsh.R.

no_job <- function(env = parent.frame()) {
  withr::local_envvar(c(SLURM_JOB_ID = NA, SLURMD_NODENAME = NA, PE_HOSTFILE = NA, JOB_ID = NA,
                        PJM_JOBID = NA), .local_envir = env)
}

node_opts <- function(rshcmd, ...) {
  makeNodePSOCK("n1", port = 11000L, rshcmd = rshcmd, action = "options", ...)
}

test_that("\"<hpc>\" outside any job is an error naming the argument and the variables", {
  no_job()
  err <- tryCatch(node_opts("<hpc>"), error = function(e) e)
  expect_s3_class(err, "error")
  expect_match(conditionMessage(err), "rshcmd")
  expect_match(conditionMessage(err), "SLURM_JOB_ID")
  expect_match(conditionMessage(err), "PE_HOSTFILE")
  expect_match(conditionMessage(err), "c(\"<hpc>\", \"<ssh>\")", fixed = TRUE)
  # Also through makeClusterPSOCK(), before anything is started.
  expect_error(makeClusterPSOCK("n1", rshcmd = "<hpc>"), "<hpc>")
})

test_that("c(\"<hpc>\", \"<ssh>\") outside a job is ssh, with its reverse tunnel", {
  no_job()
  o <- node_opts(c("<hpc>", "<ssh>"))
  # "<ssh>" is the built-in client, chosen explicitly (R/ssh.R).
  expect_null(o$rshcmd)
  expect_identical(o$client, "built-in")
  expect_identical(o$ssh$choice, "built-in")
  expect_true(o$revtunnel)
})

test_that("\"<hpc>\" in a Slurm job is \"<srun>\", in a Grid Engine job \"<qrsh>\"", {
  no_job()
  withr::local_envvar(SLURM_JOB_ID = "4711")
  o <- node_opts("<hpc>")
  expect_identical(o$rshcmd, "<srun>")
  expect_false(o$revtunnel)
  expect_match(o$rsh_call, "^srun --nodes=1 --ntasks=1 --overlap -w n1$")
  withr::local_envvar(SLURM_JOB_ID = NA, JOB_ID = "12", PE_HOSTFILE = tempfile())
  o <- node_opts(c("<hpc>", "<ssh>"))
  expect_identical(o$rshcmd, "<qrsh>")
  expect_false(o$revtunnel)
  expect_identical(o$rsh_call, "qrsh -inherit -V n1")
  expect_identical(o$master, Sys.info()[["nodename"]])
})

test_that("\"<qrsh>\" outside a Grid Engine job, or with a reverse tunnel, is an error", {
  no_job()
  expect_error(node_opts("<qrsh>"), "JOB_ID is not set")
  withr::local_envvar(JOB_ID = "12")
  expect_error(node_opts("<qrsh>"), "no parallel environment")
  withr::local_envvar(PE_HOSTFILE = tempfile())
  expect_error(node_opts("<qrsh>", revtunnel = TRUE), "revtunnel")
  # A dry run needs no job.
  withr::local_envvar(JOB_ID = NA, PE_HOSTFILE = NA)
  out <- capture.output(makeNodePSOCK("n1", port = 11000L, rshcmd = "<qrsh>", dryrun = TRUE))
  expect_true(any(grepl("qrsh -inherit -V n1", out, fixed = TRUE)))
})

test_that("\"<pjrsh>\", and \"<hpc>\" in a PJM job, say they are not supported yet", {
  no_job()
  expect_error(node_opts("<pjrsh>"), "not supported yet")
  withr::local_envvar(PJM_JOBID = "77")
  expect_error(node_opts("<hpc>"), "not supported yet")
  expect_error(makeClusterPSOCK(1L, rshcmd = "<pjrsh>"), "not supported yet")
})

test_that("with \"auto\", a Slurm job's single-worker nodes start plain in one batch; nodes with two or more fork, a batch each", {
  no_job()
  withr::local_envvar(SLURM_JOB_ID = "4711", SLURMD_NODENAME = "n0")
  workers <- c("n1", "n2", "n2", "n3", "n4", "n4", "n4")
  options <- lapply(seq_along(workers), function(i) {
    makeNodePSOCK(workers[i], port = 11000L, rshcmd = "<srun>", rank = i, action = "options")
  })
  expect_true(all(vapply(options, function(o) o$setup_strategy, "") == "fork"))
  settled <- parallelly:::plain_where_forking_does_not_pay(options)
  expect_identical(vapply(settled, function(o) o$setup_strategy, ""),
                   c("parallel", "fork", "fork", "parallel", "fork", "fork", "fork"))
  batches <- parallelly:::setup_batches(settled)
  expect_identical(unname(batches), list(c(1L, 4L), 2:3, 5:7))
  # Asked for explicitly, every node forks (a batch each).
  explicit <- lapply(seq_along(workers), function(i) {
    makeNodePSOCK(workers[i], port = 11000L, rshcmd = "<srun>", rank = i, setup_strategy = "fork", action = "options")
  })
  expect_identical(parallelly:::plain_where_forking_does_not_pay(explicit), explicit)
  # SSH hosts have no such rule: one worker still gets a server.
  ssh <- list(makeNodePSOCK("n1", port = 11000L, action = "options"))
  expect_identical(parallelly:::plain_where_forking_does_not_pay(ssh), ssh)
})
