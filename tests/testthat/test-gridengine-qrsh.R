# rshcmd = "<qrsh>" on the real Grid Engine test cluster (helper-gridengine.R): workers as
# tasks of the qsub job the master runs in (qrsh -inherit). The cluster has one host, the
# master's own, whose workers makeClusterPSOCK() starts as local ones; the tests make them
# go through qrsh by marking the host as not local (attribute `localhost = FALSE`), so that
# every worker below is a Grid Engine task.

# R code run in the job first: a cluster of `n` qrsh workers on this host, started together
# (as makeClusterPSOCK() starts the workers of a host), one task each unless another
# setup_strategy is given ("auto" forks two or more), and a wait with a timeout.
qrsh_setup <- quote({
  library(parallelly)
  host <- Sys.info()[["nodename"]]
  qrsh_cluster <- function(n, setup_strategy = "parallel", ...) {
    port <- parallelly::freePort()
    opts <- lapply(seq_len(n), function(i) makeNodePSOCK(structure(host, localhost = FALSE), port = port,
                                                         rshcmd = "<qrsh>", rank = i, action = "options",
                                                         setup_strategy = setup_strategy, ...))
    structure(parallelly:::connect_workers(opts), class = c("RichSOCKcluster", "SOCKcluster", "cluster"))
  }
  wait_for <- function(f, timeout = 10) {
    deadline <- Sys.time() + timeout
    repeat {
      ok <- f()
      if (isTRUE(ok) || Sys.time() > deadline) return(ok)
      Sys.sleep(0.05)
    }
  }
  # Processes of this job's tasks still running on the host (not this R session, whose
  # command line holds this code): qrsh clients, the tasks (qrsh_starter, the task script)
  # and the R workers.
  leftovers <- function() {
    ps <- trimws(system2("ps", c("-eo", "pid=,args="), stdout = TRUE))
    pid <- as.integer(sub(" .*$", "", ps))
    args <- sub("^[0-9]+ +", "", ps)
    keep <- pid != Sys.getpid() & grepl("^(\\S*/)?qrsh -inherit|qrsh_starter|base64 -d|MASTER=\\S+ PORT=", args)
    args[keep]
  }
})

in_job <- function(body, slots = 4L, ...) {
  gridengine_r(bquote({ .(qrsh_setup); .(body) }), slots = slots, ...)
}

test_that("qrsh workers: tasks of the job, killNode() and the cause of death, cloneNode(), stopCluster()", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    t0 <- Sys.time()
    cl <- qrsh_cluster(3L)
    setup <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res <- list(setup = setup)
    res$kinds <- vapply(cl, function(n) attr(n, "process")$kind, "")
    res$keys <- vapply(cl, parallelly:::node_key, "")
    res$host <- host
    res$jobs <- unlist(parallel::clusterEvalQ(cl, Sys.getenv("JOB_ID")))
    res$job <- Sys.getenv("JOB_ID")
    res$sum <- unlist(parallel::parLapply(cl, 1:6, function(x) x^2))
    res$alive <- isNodeAlive(cl)
    t1 <- Sys.time()
    res$killed <- killNode(cl[[2]])
    res$dead_after <- wait_for(function() identical(isNodeAlive(cl), c(TRUE, FALSE, TRUE)))
    res$dead_secs <- as.numeric(difftime(Sys.time(), t1, units = "secs"))
    res$exit <- summary(cl)$exit
    res$others <- unlist(parallel::clusterEvalQ(cl[c(1, 3)], 1 + 1))
    cl[[2]] <- cloneNode(cl[[2]])
    res$clone_kind <- attr(cl[[2]], "process")$kind
    res$clone_job <- parallel::clusterEvalQ(cl[2], Sys.getenv("JOB_ID"))[[1]]
    res$running <- leftovers()
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(leftovers()) == 0L)
    res$left_what <- leftovers()
    res
  }))
  expect_identical(unname(got$kinds), rep("qrsh", 3L))
  # Their keys name the kind and the host; the client's PID stands in for the start time.
  expect_match(got$keys, sprintf("^qrsh:%s/[0-9]+@client[0-9]+$", got$host))
  # The workers run as tasks of the master's job.
  expect_identical(unname(got$jobs), rep(got$job, 3L))
  expect_identical(got$sum, (1:6)^2)
  expect_identical(got$alive, rep(TRUE, 3L))
  expect_true(got$killed)
  expect_true(got$dead_after)
  expect_lt(got$dead_secs, 10)
  expect_match(got$exit[2], "killed by signal 15 \\(SIGTERM\\) \\(Grid Engine task of job [0-9]+\\)")
  expect_true(all(is.na(got$exit[c(1, 3)])))
  expect_identical(got$others, c(2, 2))
  expect_identical(got$clone_kind, "qrsh")
  expect_identical(got$clone_job, got$job)
  # Three workers, their qrsh clients and their tasks ran; none is left after stopCluster().
  expect_identical(sum(grepl("qrsh -inherit", got$running)), 3L, info = paste(got$running, collapse = "\n"))
  expect_identical(sum(grepl("qrsh_starter", got$running)), 3L)
  expect_identical(sum(grepl("MASTER=", got$running)), 3L)
  expect_true(got$left, info = paste(got$left_what, collapse = "\n"))
  expect_lt(got$setup, 30)
})

test_that("setup_strategy = \"fork\": one task runs the host's fork server, its workers are forks; kill, clone, stop", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    cl <- qrsh_cluster(3L, setup_strategy = "fork")
    res <- list(kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                jobs = unlist(parallel::clusterEvalQ(cl, Sys.getenv("JOB_ID"))), job = Sys.getenv("JOB_ID"),
                running = leftovers(), alive = isNodeAlive(cl))
    parallel:::sendCall(cl[[2]], Sys.sleep, list(60))
    t1 <- Sys.time()
    res$killed <- killNode(cl[[2]])
    res$dead_after <- wait_for(function() identical(isNodeAlive(cl), c(TRUE, FALSE, TRUE)))
    res$dead_secs <- as.numeric(difftime(Sys.time(), t1, units = "secs"))
    res$exit <- summary(cl)$exit
    res$after_kill <- leftovers()
    cl[[2]] <- cloneNode(cl[[2]])
    res$clone_kind <- attr(cl[[2]], "process")$kind
    res$sum <- unlist(parallel::parLapply(cl, 1:6, function(x) x^2))
    res$after_clone <- leftovers()
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(leftovers()) == 0L, timeout = 15)
    res$left_what <- leftovers()
    res
  }))
  expect_identical(unname(got$kinds), rep("fork", 3L))
  expect_identical(unname(got$jobs), rep(got$job, 3L))
  # One task (the fork server) for three workers.
  expect_identical(sum(grepl("qrsh -inherit", got$running)), 1L, info = paste(got$running, collapse = "\n"))
  expect_identical(sum(grepl("qrsh_starter", got$running)), 1L)
  expect_identical(got$alive, rep(TRUE, 3L))
  expect_true(got$killed)
  expect_true(got$dead_after)
  expect_lt(got$dead_secs, 10)
  expect_match(got$exit[2], "SIGTERM")
  # The kill went through the server: its task lives on, no task was started.
  expect_identical(sum(grepl("qrsh -inherit", got$after_kill)), 1L)
  expect_identical(got$clone_kind, "fork")
  expect_identical(sum(grepl("qrsh -inherit", got$after_clone)), 1L)
  expect_identical(got$sum, (1:6)^2)
  expect_true(got$left, info = paste(got$left_what, collapse = "\n"))
})

test_that("setup_strategy = \"auto\": two or more workers on a host are forked from one task, a single one is a plain task", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    cl <- qrsh_cluster(3L, setup_strategy = "auto")
    res <- list(kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                ppids = unlist(parallel::clusterEvalQ(cl, as.integer(strsplit(sub("^.*\\) ", "", readLines("/proc/self/stat")), " ")[[1]][2]))),
                pids = unlist(parallel::clusterEvalQ(cl, Sys.getpid())),
                running = leftovers(), alive = isNodeAlive(cl))
    parallel:::sendCall(cl[[3]], Sys.sleep, list(60))
    res$killed <- killNode(cl[[3]])
    res$dead_after <- wait_for(function() identical(isNodeAlive(cl), c(TRUE, TRUE, FALSE)))
    res$exit <- summary(cl)$exit
    res$after_kill <- leftovers()
    cl[[3]] <- cloneNode(cl[[3]])
    res$clone_kind <- attr(cl[[3]], "process")$kind
    res$after_clone <- leftovers()
    res$sum <- unlist(parallel::parLapply(cl, 1:6, function(x) x^2))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(leftovers()) == 0L, timeout = 15)
    res$left_what <- leftovers()
    one <- qrsh_cluster(1L, setup_strategy = "auto")
    res$one_kind <- attr(one[[1]], "process")$kind
    res$one_running <- leftovers()
    res$one_alive <- isNodeAlive(one)
    parallel::stopCluster(one)
    res$one_left <- wait_for(function() length(leftovers()) == 0L, timeout = 15)
    res
  }))
  expect_identical(unname(got$kinds), rep("fork", 3L))
  # The three are children of one process, the fork server, which is no worker.
  expect_identical(length(unique(got$ppids)), 1L)
  expect_false(got$ppids[1] %in% got$pids)
  # One task (the fork server) for three workers.
  expect_identical(sum(grepl("qrsh -inherit", got$running)), 1L, info = paste(got$running, collapse = "\n"))
  expect_identical(got$alive, rep(TRUE, 3L))
  expect_true(got$killed)
  expect_true(got$dead_after)
  expect_match(got$exit[3], "SIGTERM")
  expect_identical(sum(grepl("qrsh -inherit", got$after_kill)), 1L)
  expect_identical(got$clone_kind, "fork")
  expect_identical(sum(grepl("qrsh -inherit", got$after_clone)), 1L)
  expect_identical(got$sum, (1:6)^2)
  expect_true(got$left, info = paste(got$left_what, collapse = "\n"))
  # A single worker: its own task, no server.
  expect_identical(got$one_kind, "qrsh")
  expect_identical(sum(grepl("qrsh -inherit", got$one_running)), 1L)
  expect_identical(got$one_alive, TRUE)
  expect_true(got$one_left)
})

test_that("setup_strategy = \"auto\" where the task's R has no parallelly of ours: plain tasks in the job's slots, quietly", {
  skip_if_no_gridengine()
  lib <- local_library_without_parallelly()
  empty <- lib$dir
  environ <- lib$environ
  got <- in_job(bquote({
    libs <- c(R_ENVIRON = .(environ), R_LIBS = .(empty), R_LIBS_SITE = .(empty), R_LIBS_USER = .(empty))
    rounds <- list()
    for (round in 1:2) {
      said <- character()
      t0 <- Sys.time()
      # Two workers in two slots: the fork server's task must have left its slot before the
      # workers' tasks start.
      cl <- withCallingHandlers(qrsh_cluster(2L, setup_strategy = "auto", rscript_envs = libs),
        warning = function(w) { said <<- c(said, conditionMessage(w)); invokeRestart("muffleWarning") },
        message = function(m) { said <<- c(said, conditionMessage(m)); invokeRestart("muffleMessage") })
      r <- list(said = said, setup = as.numeric(difftime(Sys.time(), t0, units = "secs")),
                kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                has = unlist(parallel::clusterEvalQ(cl, requireNamespace("parallelly", quietly = TRUE))),
                running = leftovers(), alive = isNodeAlive(cl),
                refusals = length(ls(parallelly:::.package$fork_refusals)))
      parallel::stopCluster(cl)
      r$left <- wait_for(function() length(leftovers()) == 0L, timeout = 15)
      rounds[[round]] <- r
    }
    rounds
  }), slots = 2L)
  for (r in got) {
    expect_length(r$said, 0L)
    expect_identical(unname(r$kinds), c("qrsh", "qrsh"))
    expect_identical(unname(r$has), c(FALSE, FALSE))
    expect_identical(sum(grepl("qrsh -inherit", r$running)), 2L, info = paste(r$running, collapse = "\n"))
    expect_identical(r$alive, c(TRUE, TRUE))
    expect_true(r$left)
  }
  # The refusal is remembered: the second setup starts no server (and no second refusal).
  expect_identical(got[[1]]$refusals, 1L)
  expect_identical(got[[2]]$refusals, 1L)
  message(sprintf("qrsh fallback setup of 2 workers: first %.2f s (server tried), second %.2f s",
                  got[[1]]$setup, got[[2]]$setup))
})

test_that("future::plan(cluster) on qrsh workers inside a qsub job", {
  skip_if_no_gridengine()
  skip_if_not_installed("future")
  got <- in_job(quote({
    cl <- qrsh_cluster(2L)
    oplan <- future::plan(future::cluster, workers = cl)
    fs <- lapply(1:4, function(i) future::future(list(i = i, job = Sys.getenv("JOB_ID"), pid = Sys.getpid())))
    vs <- future::value(fs)
    future::plan(oplan)
    parallel::stopCluster(cl)
    list(vs = vs, job = Sys.getenv("JOB_ID"), pids = vapply(cl, function(n) attr(n, "process")$pid, 1L),
         left = wait_for(function() length(leftovers()) == 0L))
  }))
  expect_identical(vapply(got$vs, `[[`, 1L, "i"), 1:4)
  expect_identical(unique(vapply(got$vs, `[[`, "", "job")), got$job)
  expect_true(all(vapply(got$vs, `[[`, 1L, "pid") %in% got$pids))
  expect_true(got$left)
})

test_that("more qrsh workers on a host than the job's slots there: a clear error, and the job lives on", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    err <- tryCatch(qrsh_cluster(3L, connectTimeout = 20), error = function(e) e)
    list(class = class(err), msg = conditionMessage(err), left = wait_for(function() length(leftovers()) == 0L))
  }), slots = 2L)
  expect_true("PSOCKConnectionError" %in% got$class)
  expect_match(got$msg, "no free slot")
  expect_true(got$left)
})

test_that("in a job, workers of the master's host are local, and rshcmd = \"<hpc>\" is \"<qrsh>\"", {
  cluster <- skip_if_no_gridengine()
  got <- in_job(quote({
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<hpc>")
    res <- list(workers = availableWorkers(), kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                hpc = makeNodePSOCK(structure(host, localhost = FALSE), port = 11000L, rshcmd = "<hpc>", action = "options")$rshcmd,
                fallback = makeNodePSOCK(structure(host, localhost = FALSE), port = 11000L, rshcmd = c("<hpc>", "<ssh>"), action = "options")$rshcmd)
    parallel::stopCluster(cl)
    res
  }), slots = 2L)
  expect_identical(got$workers, rep(cluster$host, 2L))
  expect_true(all(got$kinds %in% c("local", "fork")))
  expect_identical(got$hpc, "<qrsh>")
  expect_identical(got$fallback, "<qrsh>")
})

test_that("stopCluster() with a busy qrsh worker: it is ended through its task, and the job lives on", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    cl <- qrsh_cluster(2L)
    parallel:::sendCall(cl[[1]], Sys.sleep, list(120))
    t0 <- Sys.time()
    parallel::stopCluster(cl)
    res <- list(stop_secs = as.numeric(difftime(Sys.time(), t0, units = "secs")))
    res$left <- wait_for(function() length(leftovers()) == 0L, timeout = 20)
    res$left_secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res$left_what <- leftovers()
    res
  }), slots = 2L)
  expect_lt(got$stop_secs, 1)
  expect_true(got$left, info = paste(got$left_what, collapse = "\n"))
  # SIGTERM through the task after 5 s (as for local workers); well before the 120 s.
  expect_lt(got$left_secs, 15)
})

test_that("with qmaster stopped, isNodeAlive() and killNode() answer at once", {
  skip_if_no_gridengine()
  got <- in_job(quote({
    cl <- qrsh_cluster(2L)
    # The job runs in the test cluster's PID namespace: qmaster is one of its processes.
    ps <- trimws(system2("ps", c("-eo", "pid=,comm="), stdout = TRUE))
    qmaster <- as.integer(sub(" .*$", "", ps[grepl(" sge_qmaster$", ps)]))
    stopifnot(length(qmaster) == 1L)
    tools::pskill(qmaster, tools::SIGSTOP)
    on.exit(tools::pskill(qmaster, tools::SIGCONT))
    t0 <- Sys.time()
    res <- list(alive = isNodeAlive(cl, timeout = 5))
    res$killed <- killNode(cl[[1]], timeout = 5)
    res$dead <- wait_for(function() identical(isNodeAlive(cl), c(FALSE, TRUE)))
    res$secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    tools::pskill(qmaster, tools::SIGCONT)
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(leftovers()) == 0L)
    res
  }), slots = 2L)
  expect_identical(got$alive, c(TRUE, TRUE))
  expect_true(got$killed)
  expect_true(got$dead)
  expect_lt(got$secs, 5)
  expect_true(got$left)
})
