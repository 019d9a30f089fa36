# rshcmd = "<srun>" on the real Slurm test cluster (helper-slurm.R): workers as job steps of
# the allocation the master runs in. Each test runs its R code in a batch script (the master
# then runs on the job's first node, whose workers are local) or under salloc (the master
# outside the allocation). Nodes n3, n4, n5 have 2 CPUs (partition "small", the default),
# n1, n2 4 CPUs ("big"); partition "all" has all five.

# The job's steps other than the batch script's, as "JOB.STEP NODE NAME" (run in a job).
steps_of_job <- quote(function() {
  out <- suppressWarnings(system2("squeue", c("-h", "-s", "-j", Sys.getenv("SLURM_JOB_ID"), "-o", "'%i %N %j'"),
                                  stdout = TRUE))
  out[!grepl("[.](batch|extern) ", out)]
})

# Wait (up to `timeout` s) until `f()` is TRUE; its last value.
wait_for <- quote(function(f, timeout = 5) {
  deadline <- Sys.time() + timeout
  repeat {
    ok <- f()
    if (isTRUE(ok) || Sys.time() > deadline) return(ok)
    Sys.sleep(0.05)
  }
})

# Run `body` (quoted) as R code in a Slurm job (see slurm_r()), with parallelly attached and
# the two functions above defined.
in_job <- function(launcher, args, body, ...) {
  slurm_r(launcher, args, bquote({
    steps_of_job <- .(steps_of_job)
    wait_for <- .(wait_for)
    library(parallelly)
    .(body)
  }), ...)
}

test_that("a batch script's cluster: steps on the other nodes, local workers on its own", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-N2", "-n4"), bquote({
    t0 <- Sys.time()
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<srun>", setup_strategy = "parallel")
    setup <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res <- list(
      batch_host = Sys.getenv("SLURMD_NODENAME"),
      hosts = vapply(cl, function(n) as.character(n$host), ""),
      local = vapply(cl, function(n) isTRUE(attr(n$host, "localhost")), NA),
      ran_on = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURMD_NODENAME"))),
      worker_steps = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURM_STEP_ID"))),
      steps = vapply(cl, function(n) { s <- attr(n, "process")$step; if (is.null(s)) NA_character_ else s }, ""),
      masters = vapply(cl, function(n) parallelly:::node_options(n)$master, ""),
      revtunnel = vapply(cl, function(n) parallelly:::node_options(n)$revtunnel, NA),
      listed = steps_of_job(),
      alive = isNodeAlive(cl),
      sum = unlist(parallel::parLapply(cl, 1:8, function(x) x^2)),
      setup = setup
    )
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) == 0L)
    res$left_steps <- steps_of_job()
    res
  }))
  expect_identical(got$batch_host, "n3")
  expect_identical(unname(got$hosts), c("n3", "n3", "n4", "n4"))
  expect_identical(unname(got$local), c(TRUE, TRUE, FALSE, FALSE))
  expect_identical(unname(got$ran_on), c("n3", "n3", "n4", "n4"))
  # The remote workers run in job steps of their own, whose ids the nodes recorded.
  job <- sub("[.].*$", "", got$steps[3])
  expect_match(got$steps[3:4], "^[0-9]+[.][0-9]+$")
  expect_identical(unname(got$worker_steps[3:4]), sub("^.*[.]", "", got$steps[3:4]))
  expect_true(all(is.na(got$steps[1:2])))
  expect_setequal(sub(" .*$", "", got$listed), got$steps[3:4])
  expect_true(all(grepl(" n4 parallelly-", got$listed)))
  # The nodes reach the master at the batch host's address (NodeAddr, 127.0.0.1 here).
  expect_identical(unname(got$masters), c("localhost", "localhost", "127.0.0.1", "127.0.0.1"))
  expect_false(any(got$revtunnel))
  expect_identical(got$alive, rep(TRUE, 4))
  expect_identical(got$sum, (1:8)^2)
  expect_lt(got$setup, 10)
  # stopCluster() leaves no step.
  expect_true(got$left, info = paste(got$left_steps, collapse = "\n"))
})

test_that("killNode() of a busy step worker: scancel, no new step; isNodeAlive() sees it; cloneNode() starts a new step", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-N2", "-n4"), bquote({
    cl <- makeClusterPSOCK(c("n4", "n4"), rshcmd = "<srun>", setup_strategy = "parallel")
    before <- steps_of_job()
    parallel:::sendCall(cl[[1]], Sys.sleep, list(60))
    t0 <- Sys.time()
    alive0 <- isNodeAlive(cl, timeout = 5)
    probe_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    t0 <- Sys.time()
    killed <- killNode(cl[[1]], timeout = 5)
    kill_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    dead <- wait_for(function() identical(isNodeAlive(cl, timeout = 5), c(FALSE, TRUE)))
    dead_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    after <- steps_of_job()
    s <- summary(cl)
    printed <- capture.output(print(cl[[1]]))
    old_step <- attr(cl[[1]], "process")$step
    # The killed worker's R temporary directory (the nodes share /tmp here) is removed at
    # stopCluster(), by a step of its own: killNode() starts none.
    tmp <- cl[[1]]$session_info$tempdir
    tmp_after_kill <- dir.exists(tmp)
    cl[[1]] <- cloneNode(cl[[1]])
    res <- list(before = before, alive0 = alive0, probe_s = probe_s, killed = killed,
                kill_s = kill_s, dead = dead, dead_s = dead_s, after = after,
                exit = s$exit, alive_summary = s$alive, printed = printed, old_step = old_step,
                new_step = attr(cl[[1]], "process")$step,
                live_step = attr(cl[[2]], "process")$step, printed_live = capture.output(print(cl[[2]])),
                values = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURM_STEP_ID"))),
                steps_now = steps_of_job())
    parallel::stopCluster(cl)
    # Idle workers end on DONE; none is busy here (the killed one was replaced).
    res$left <- wait_for(function() length(steps_of_job()) == 0L)
    res$tmp_after_kill <- tmp_after_kill
    res$tmp_removed <- wait_for(function() !dir.exists(tmp))
    res
  }))
  expect_length(got$before, 2L)
  expect_identical(got$alive0, c(TRUE, TRUE))
  expect_lt(got$probe_s, 2)
  expect_true(got$killed)
  expect_lt(got$kill_s, 2)
  expect_true(got$dead)
  expect_lt(got$dead_s, 3)
  # The killed worker's step is gone and no other step was started for the kill.
  expect_identical(sub(" .*$", "", got$after), setdiff(sub(" .*$", "", got$before), got$old_step))
  expect_identical(got$alive_summary, c(FALSE, TRUE))
  expect_match(got$exit[1], "SIGTERM")
  expect_match(got$exit[1], got$old_step, fixed = TRUE)
  expect_true(is.na(got$exit[2]))
  expect_match(paste(got$printed, collapse = "\n"), got$old_step, fixed = TRUE)
  # The clone is a new step of the same job.
  expect_false(identical(got$new_step, got$old_step))
  expect_identical(sub("[.].*$", "", got$new_step), sub("[.].*$", "", got$old_step))
  expect_identical(unname(got$values[1]), sub("^.*[.]", "", got$new_step))
  expect_length(got$steps_now, 2L)
  # print() of a live step worker names its step (without asking Slurm).
  expect_match(paste(got$printed_live, collapse = "\n"), sprintf("(Slurm job step %s)", got$live_step), fixed = TRUE)
  expect_true(got$left)
  expect_true(got$tmp_after_kill)
  expect_true(got$tmp_removed)
})

test_that("setup_strategy = \"fork\": one step per node runs a fork server, its workers are forks; kill, clone, stop", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-p", "all", "-N3", "--ntasks-per-node=2"), bquote({
    w <- availableWorkers()
    cl <- makeClusterPSOCK(w, rshcmd = "<srun>", setup_strategy = "fork")
    remote <- which(!vapply(cl, function(n) isTRUE(attr(n$host, "localhost")), NA))
    res <- list(workers = w, remote = remote,
                kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                ran_on = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURMD_NODENAME"))),
                steps = steps_of_job(), alive = isNodeAlive(cl))
    # The fork servers' steps (one per node, each its own setup batch): when each srun
    # started, and when its step was seen running.
    hz <- as.numeric(system("getconf CLK_TCK", intern = TRUE))
    btime <- as.numeric(sub("^btime ", "", grep("^btime ", readLines("/proc/stat"), value = TRUE)))
    servers <- Filter(function(p) is.character(p$step), lapply(as.list(parallelly:::.package$fork_servers), function(s) attr(s$node, "process")))
    res$server_srun_started <- vapply(servers, function(p) btime + parallelly:::proc_start_ticks(p$launcher_pid) / hz, 0)
    res$server_step_seen <- vapply(servers, function(p) p$step_start, 0)
    k <- remote[1L]
    logs <- vapply(cl[remote], function(n) attr(n, "process")$log, "")
    res$logs_there <- file.exists(logs)  # the nodes share /tmp here
    parallel::clusterEvalQ(cl[k], cat("last words of a forked worker\n"))
    parallel:::sendCall(cl[[k]], Sys.sleep, list(60))
    t0 <- Sys.time()
    res$killed <- killNode(cl[[k]], timeout = 5)
    res$kill_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res$dead <- wait_for(function() identical(isNodeAlive(cl[[k]], timeout = 5), FALSE))
    res$alive_after <- isNodeAlive(cl)
    res$exit <- summary(cl)$exit[k]
    res$printed <- paste(capture.output(print(cl[[k]])), collapse = "\n")
    res$steps_after_kill <- steps_of_job()
    cl[[k]] <- cloneNode(cl[[k]])
    res$clone_kind <- attr(cl[[k]], "process")$kind
    res$clone_on <- parallel::clusterEvalQ(cl[k], Sys.getenv("SLURMD_NODENAME"))[[1]]
    res$steps_after_clone <- steps_of_job()
    res$sum <- sum(unlist(parallel::parLapply(cl, 1:12, function(x) x^2)))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) == 0L, timeout = 15)
    res$left_steps <- steps_of_job()
    res$logs_left <- wait_for(function() !any(file.exists(logs)), timeout = 10)
    res
  }))
  expect_length(got$workers, 6L)
  expect_length(got$remote, 4L)
  expect_identical(unname(got$kinds[got$remote]), rep("fork", 4L))
  expect_identical(unname(got$ran_on), got$workers)
  # Four remote workers on two nodes: two steps (the fork servers), not four.
  expect_length(got$steps, 2L)
  # The nodes' launches are polled together: both servers' sruns were spawned before either
  # step was seen running (a launch that waited for its step would start the next after).
  expect_length(got$server_srun_started, 2L)
  expect_lt(max(got$server_srun_started), min(got$server_step_seen))
  expect_identical(got$alive, rep(TRUE, 6L))
  expect_true(got$killed)
  expect_lt(got$kill_s, 2)
  expect_true(got$dead)
  expect_identical(sum(!got$alive_after), 1L)
  expect_match(got$exit, "SIGTERM")
  # Its last words, read by its server from its log on the node; no log is left at the end.
  expect_identical(got$logs_there, rep(TRUE, 4L))
  expect_match(got$printed, "last words of a forked worker", fixed = TRUE)
  expect_true(got$logs_left)
  # The kill went through the fork server: its step lives on, no step was started.
  expect_identical(got$steps_after_kill, got$steps)
  expect_identical(got$clone_kind, "fork")
  expect_identical(got$clone_on, got$workers[got$remote[1L]])
  expect_identical(got$steps_after_clone, got$steps)
  expect_identical(got$sum, sum((1:12)^2))
  expect_true(got$left, label = paste(got$left_steps, collapse = ", "))
})

test_that("setup_strategy = \"auto\": a node with several workers forks them from one step, a node with one worker is a plain step", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-p", "all", "-N3", "--ntasks-per-node=2"), bquote({
    nodes <- unique(availableWorkers())
    # All remote: three workers on the second node, one on the third.
    w <- c(nodes[2], nodes[2], nodes[2], nodes[3])
    cl <- makeClusterPSOCK(w, rshcmd = "<srun>")
    facts <- function(cl) parallel::clusterEvalQ(cl, {
      stat <- readLines(sprintf("/proc/%d/stat", Sys.getpid()))
      ppid <- as.integer(strsplit(sub("^.*\\) ", "", stat), " ")[[1]][2])
      list(node = Sys.getenv("SLURMD_NODENAME"), pid = Sys.getpid(), ppid = ppid,
           parent = readLines(sprintf("/proc/%d/comm", ppid)))
    })
    res <- list(workers = w, kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                facts = facts(cl), steps = steps_of_job(), alive = isNodeAlive(cl))
    parallel:::sendCall(cl[[2]], Sys.sleep, list(60))
    res$killed <- killNode(cl[[2]], timeout = 5)
    res$dead <- wait_for(function() identical(isNodeAlive(cl, timeout = 5), c(TRUE, FALSE, TRUE, TRUE)))
    res$exit <- summary(cl)$exit
    res$steps_after_kill <- steps_of_job()
    cl[[2]] <- cloneNode(cl[[2]])
    res$clone_kind <- attr(cl[[2]], "process")$kind
    res$clone_facts <- facts(cl[2])[[1]]
    res$steps_after_clone <- steps_of_job()
    res$sum <- sum(unlist(parallel::parLapply(cl, 1:8, function(x) x^2)))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) == 0L, timeout = 15)
    res$left_steps <- steps_of_job()
    res
  }))
  nodes <- unique(got$workers)
  expect_identical(unname(got$kinds), c("fork", "fork", "fork", "srun"))
  expect_identical(vapply(got$facts, `[[`, "", "node"), got$workers)
  # The three workers of the second node are children of one R process, the fork server
  # (not a worker); the single worker of the third node is started by Slurm, not by R.
  ppids <- vapply(got$facts, `[[`, 0L, "ppid")
  parents <- vapply(got$facts, `[[`, "", "parent")
  expect_identical(length(unique(ppids[1:3])), 1L)
  expect_false(ppids[1] %in% vapply(got$facts, `[[`, 0L, "pid"))
  expect_identical(parents[1:3], rep("R", 3L))
  expect_false(parents[4] %in% c("R", "Rscript"))
  # Two steps for four workers: the second node's fork server and the third node's worker.
  expect_length(got$steps, 2L)
  expect_setequal(sub("^[^ ]+ ([^ ]+) .*$", "\\1", got$steps), nodes)
  expect_identical(got$alive, rep(TRUE, 4L))
  expect_true(got$killed)
  expect_true(got$dead)
  expect_match(got$exit[2], "SIGTERM")
  # The kill went through the server and the clone is its fork: no step started or ended.
  expect_identical(got$steps_after_kill, got$steps)
  expect_identical(got$clone_kind, "fork")
  expect_identical(got$clone_facts$ppid, ppids[1])
  expect_identical(got$steps_after_clone, got$steps)
  expect_identical(got$sum, sum((1:8)^2))
  expect_true(got$left, label = paste(got$left_steps, collapse = ", "))
})

test_that("setup_strategy = \"auto\" on a node whose R has no parallelly of ours: plain steps, quietly, and no server the second time", {
  skip_if_no_slurm()
  lib <- local_library_without_parallelly()
  empty <- lib$dir
  environ <- lib$environ
  got <- in_job("sbatch", c("-N2", "-n4"), bquote({
    # The workers' R libraries: none of ours, and either the reference parallelly (an older
    # version, the system's site library) or no parallelly at all.
    none <- c(R_ENVIRON = .(environ), R_LIBS = .(empty), R_LIBS_SITE = .(empty), R_LIBS_USER = .(empty))
    libs <- list(older = replace(none, "R_LIBS_SITE", file.path(R.home(), "site-library")), none = none)
    step_ids <- function() as.integer(sub("^[0-9]+[.]([0-9]+) .*$", "\\1", steps_of_job()))
    rounds <- list()
    for (round in c("older", "none", "none")) {
      said <- character()
      cl <- withCallingHandlers(
        makeClusterPSOCK(c("n4", "n4"), rshcmd = "<srun>", rscript_envs = libs[[round]]),
        warning = function(w) { said <<- c(said, conditionMessage(w)); invokeRestart("muffleWarning") },
        message = function(m) { said <<- c(said, conditionMessage(m)); invokeRestart("muffleMessage") })
      r <- list(round = round, said = said, kinds = vapply(cl, function(n) attr(n, "process")$kind, ""),
                ids = step_ids(),
                version = parallel::clusterEvalQ(cl[1], {
                  v <- tryCatch(as.character(utils::packageVersion("parallelly")), error = function(e) "none")
                  parent <- as.integer(strsplit(sub("^.*\\) ", "", readLines("/proc/self/stat")), " ")[[1]][2])
                  list(version = v, parent = readLines(sprintf("/proc/%d/comm", parent)))
                })[[1]],
                alive = isNodeAlive(cl),
                sum = sum(unlist(parallel::parLapply(cl, 1:4, function(x) x^2))))
      parallel::stopCluster(cl)
      r$left <- wait_for(function() length(steps_of_job()) == 0L, timeout = 15)
      rounds[[length(rounds) + 1L]] <- r
    }
    list(rounds = rounds, ours = as.character(utils::packageVersion("parallelly")))
  }))
  for (r in got$rounds) {
    info <- r$round
    expect_length(r$said, 0L)
    expect_identical(unname(r$kinds), c("srun", "srun"), info = info)
    expect_false(r$version$parent %in% c("R", "Rscript"), info = info)
    expect_length(r$ids, 2L)
    expect_identical(r$alive, c(TRUE, TRUE), info = info)
    expect_identical(r$sum, 30)
    expect_true(r$left, info = info)
  }
  expect_true(package_version(got$rounds[[1]]$version$version) < package_version(got$ours))
  expect_identical(got$rounds[[2]]$version$version, "none")
  # Steps are numbered in the order they start: each first round started a fork server's step
  # before its workers' steps; the repeated round knew the node cannot fork and started none.
  expect_identical(min(got$rounds[[1]]$ids), 1L)
  expect_identical(min(got$rounds[[2]]$ids), max(got$rounds[[1]]$ids) + 2L)
  expect_identical(min(got$rounds[[3]]$ids), max(got$rounds[[2]]$ids) + 1L)
})

# Run a setup that is to fail inside a 2-node sbatch job: its error's class, message and
# host, how long it took, whether the job's steps were gone afterwards, and any srun left.
failed_setup_in_job <- function(setup) {
  in_job("sbatch", c("-N2", "-n4"), bquote({
    t0 <- Sys.time()
    e <- tryCatch(.(setup), error = function(e) e)
    list(class = class(e), message = conditionMessage(e), host = e$host,
         secs = as.numeric(difftime(Sys.time(), t0, units = "secs")),
         left = wait_for(function() length(steps_of_job()) == 0L),
         left_steps = steps_of_job(),
         sruns = suppressWarnings(system2("pgrep", c("-x", "srun"), stdout = TRUE)))
  }))
}

# A launch error naming `host`, within 10 s, with no step nor srun left behind.
expect_failed_setup <- function(got, host, message) {
  expect_true("parallellyLaunchError" %in% got$class)
  expect_identical(got$host, host)
  expect_match(got$message, message)
  expect_lt(got$secs, 10)
  expect_true(got$left, label = paste("no step left; still listed:", paste(got$left_steps, collapse = ", ")))
  expect_length(got$sruns, 0L)
}

test_that("a step that would wait for CPUs (--exact, 3 workers on 2 CPUs) is an immediate error; nothing is left", {
  skip_if_no_slurm()
  got <- failed_setup_in_job(quote(makeClusterPSOCK(rep("n4", 3), rshcmd = "<srun>", rshopts = "--exact", setup_strategy = "parallel")))
  expect_failed_setup(got, host = "n4", message = "no free CPU")
  expect_true("PSOCKConnectionError" %in% got$class)
})

test_that("a node outside the allocation fails at once, naming it; its srun is gone", {
  skip_if_no_slurm()
  got <- failed_setup_in_job(quote(makeClusterPSOCK("n5", rshcmd = "<srun>")))
  expect_failed_setup(got, host = "n5", message = "not part of job")
})

test_that("under salloc the master is outside the allocation: every worker is a step", {
  skip_if_no_slurm()
  got <- in_job("salloc", c("-N2", "-n4"), bquote({
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<srun>", setup_strategy = "parallel")
    res <- list(ran_on = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURMD_NODENAME"))),
                local = vapply(cl, function(n) isTRUE(attr(n$host, "localhost")), NA),
                master = parallelly:::node_options(cl[[1]])$master,
                n_steps = length(steps_of_job()))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) == 0L)
    res
  }))
  expect_identical(unname(got$ran_on), c("n3", "n3", "n4", "n4"))
  expect_false(any(got$local))
  expect_identical(got$master, Sys.info()[["nodename"]])
  expect_identical(got$n_steps, 4L)
  expect_true(got$left)
})

test_that("future::plan(cluster) on a step cluster inside sbatch", {
  skip_if_no_slurm()
  skip_if_not_installed("future")
  got <- in_job("sbatch", c("-N2", "-n4"), bquote({
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<srun>")
    oplan <- future::plan(future::cluster, workers = cl)
    fs <- lapply(1:4, function(i) future::future(list(i = i, node = Sys.getenv("SLURMD_NODENAME"),
                                                       step = Sys.getenv("SLURM_STEP_ID"))))
    vs <- future::value(fs)
    future::plan(oplan)
    parallel::stopCluster(cl)
    list(i = vapply(vs, `[[`, 1L, "i"), nodes = vapply(vs, `[[`, "", "node"),
         steps = vapply(vs, `[[`, "", "step"),
         left = wait_for(function() length(steps_of_job()) == 0L))
  }))
  expect_identical(got$i, 1:4)
  expect_true(all(got$nodes %in% c("n3", "n4")))
  expect_true(all(got$steps[got$nodes == "n4"] != ""))
  expect_true(got$left)
})

test_that("8 workers on 4 nodes (partition all): setup time, and no step left", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-p", "all", "-N4", "--ntasks-per-node=2"), bquote({
    w <- availableWorkers()
    t0 <- Sys.time()
    cl <- makeClusterPSOCK(w, rshcmd = "<srun>", setup_strategy = "parallel")
    setup <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res <- list(workers = w, setup = setup,
                ran_on = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURMD_NODENAME"))),
                n_steps = length(steps_of_job()))
    # When each srun started (its /proc start time) and when its step was seen running.
    hz <- as.numeric(system("getconf CLK_TCK", intern = TRUE))
    btime <- as.numeric(sub("^btime ", "", grep("^btime ", readLines("/proc/stat"), value = TRUE)))
    steps <- Filter(function(n) is.character(attr(n, "process")$step), cl)
    res$srun_started <- vapply(steps, function(n) btime + parallelly:::proc_start_ticks(attr(n, "process")$launcher_pid) / hz, 0)
    res$step_seen <- vapply(steps, function(n) attr(n, "process")$step_start, 0)
    t0 <- Sys.time()
    res$alive <- isNodeAlive(cl)
    res$probe <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) == 0L)
    res
  }))
  expect_length(got$workers, 8L)
  expect_length(unique(got$workers), 4L)
  expect_identical(unname(got$ran_on), got$workers)
  expect_identical(got$n_steps, 6L)
  # The steps of all nodes start together: every srun is spawned before any step is seen
  # running (the launch is polled, never waited for node by node).
  expect_length(got$srun_started, 6L)
  expect_lt(max(got$srun_started), min(got$step_seen))
  expect_identical(got$alive, rep(TRUE, 8))
  expect_lt(got$probe, 2)
  expect_true(got$left)
  message(sprintf("<srun> cluster of 8 workers on 4 nodes: setup %.2f s, isNodeAlive() %.3f s",
                  got$setup, got$probe))
})

test_that("rshcmd = \"<srun>\" outside an allocation, or with revtunnel = TRUE: argument errors", {
  withr::local_envvar(SLURM_JOB_ID = NA, SLURMD_NODENAME = NA)
  e <- tryCatch(makeNodePSOCK("n4", port = 11999L, rshcmd = "<srun>", action = "options"),
                error = function(e) e)
  expect_s3_class(e, "parallellyArgumentError")
  expect_identical(e$argument, "rshcmd")
  expect_match(conditionMessage(e), "SLURM_JOB_ID")
  withr::local_envvar(SLURM_JOB_ID = "1")
  e <- tryCatch(makeNodePSOCK("n4", port = 11999L, rshcmd = "<srun>", revtunnel = TRUE,
                              master = "m", action = "options"), error = function(e) e)
  expect_s3_class(e, "parallellyArgumentError")
  expect_identical(e$argument, "revtunnel")
  # A dry run needs no allocation and shows the srun command (argv, no shell).
  withr::local_envvar(SLURM_JOB_ID = NA)
  out <- capture.output(makeNodePSOCK("n4", port = 11999L, rshcmd = "<srun>", master = "m",
                                      dryrun = TRUE))
  expect_match(paste(out, collapse = "\n"), "srun --nodes=1 --ntasks=1 --overlap -w n4", fixed = TRUE)
  opts <- makeNodePSOCK("n4", port = 11999L, rshcmd = "<srun>", master = "m", dryrun = TRUE,
                        action = "options")
  expect_false(opts$revtunnel)
})

test_that("stopCluster() with a busy step worker: its step is cancelled after the 5 s grace", {
  skip_if_no_slurm()
  got <- in_job("sbatch", c("-N2", "-n4"), bquote({
    cl <- makeClusterPSOCK(c("n4", "n4"), rshcmd = "<srun>", setup_strategy = "parallel")
    parallel:::sendCall(cl[[1]], Sys.sleep, list(100))
    t0 <- Sys.time()
    parallel::stopCluster(cl)
    returned <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    left <- wait_for(function() length(steps_of_job()) == 0L, timeout = 12)
    list(returned = returned, left = left, secs = as.numeric(difftime(Sys.time(), t0, units = "secs")))
  }))
  expect_lt(got$returned, 1)
  expect_true(got$left)
  expect_lt(got$secs, 10)
})

test_that("a master that dies takes its steps with it", {
  skip_if_no_slurm()
  got <- slurm_r("sbatch", c("-N2", "-n4"), bquote({
    steps_of_job <- .(steps_of_job)
    wait_for <- .(wait_for)
    inner <- tempfile(fileext = ".R")
    steps_file <- tempfile()
    writeLines(c(
      "library(parallelly)",
      "cl <- makeClusterPSOCK(c('n4', 'n4'), rshcmd = '<srun>', setup_strategy = 'parallel')",
      sprintf("writeLines(vapply(cl, function(n) attr(n, 'process')$step, ''), %s)", deparse(steps_file)),
      "tools::pskill(Sys.getpid(), tools::SIGKILL)"
    ), inner)
    status <- system2(file.path(R.home("bin"), "Rscript"), inner)
    t0 <- Sys.time()
    list(status = status, steps = readLines(steps_file),
         left = wait_for(function() length(steps_of_job()) == 0L, timeout = 10),
         secs = as.numeric(difftime(Sys.time(), t0, units = "secs")))
  }))
  expect_identical(got$status, 137L)
  expect_length(got$steps, 2L)
  expect_true(got$left)
  expect_lt(got$secs, 5)
})

# The host PID of the test cluster's slurmctld (its command line names the cluster's config).
slurmctld_pid <- function(cluster) {
  for (d in list.files("/proc", pattern = "^[0-9]+$")) {
    # Processes come and go while we look: a vanished one reads as empty.
    cmd <- tryCatch(suppressWarnings(readBin(file.path("/proc", d, "cmdline"), "raw", 4096L)),
                    error = function(e) raw(0))
    words <- strsplit(rawToChar(replace(cmd, cmd == as.raw(0), as.raw(32))), " ", fixed = TRUE)[[1]]
    if (length(words) > 0L && basename(words[1]) == "slurmctld" && cluster$conf %in% words) return(as.integer(d))
  }
  NA_integer_
}

test_that("isNodeAlive() and killNode() keep to their timeouts when the controller does not answer", {
  cluster <- skip_if_no_slurm()
  ctld <- slurmctld_pid(cluster)
  skip_if(is.na(ctld), "slurmctld of the test cluster not found")
  dir <- withr::local_tempdir("srun-ctld-")
  ready <- file.path(dir, "ready")
  stopped <- file.path(dir, "stopped")
  done <- file.path(dir, "done")
  # Stops the controller (SIGSTOP) once the job's cluster is up, resumes it when the job has
  # measured (at most 20 s later); resumed here too, whatever happens.
  script <- sprintf(paste(
    "i=0; while [ ! -e %s ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done;",
    "kill -STOP %d; touch %s;",
    "i=0; while [ ! -e %s ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; kill -CONT %d"),
    shQuote(ready), ctld, shQuote(stopped), shQuote(done), ctld)
  system2("sh", c("-c", shQuote(script)), wait = FALSE)
  withr::defer({
    file.create(done)  # the background script resumes the controller and ends
    tools::pskill(ctld, tools::SIGCONT)
  })
  got <- slurm_r("sbatch", c("-N2", "-n4"), timeout = 90, bquote({
    wait_for <- .(wait_for)
    library(parallelly)
    cl <- makeClusterPSOCK(c("n4", "n4"), rshcmd = "<srun>", setup_strategy = "parallel")
    file.create(.(ready))
    wait_for(function() file.exists(.(stopped)), timeout = 30)
    t0 <- Sys.time()
    alive <- suppressWarnings(isNodeAlive(cl, timeout = 1))
    probe_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    t0 <- Sys.time()
    killed <- suppressWarnings(killNode(cl[[1]], timeout = 1))
    kill_s <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    file.create(.(done))
    # With the controller back, the workers are still there (nothing was signalled).
    Sys.sleep(0.5)
    after <- isNodeAlive(cl, timeout = 10)
    parallel::stopCluster(cl)
    list(alive = alive, probe_s = probe_s, killed = killed, kill_s = kill_s, after = after)
  }))
  expect_identical(got$alive, c(NA, NA))
  expect_lt(got$probe_s, 2.5)
  expect_identical(got$killed, NA)
  expect_lt(got$kill_s, 2.5)
  expect_identical(got$after, c(TRUE, TRUE))
})

test_that("scontrol's step lines are parsed, pending steps included; srun options", {
  # As Slurm 22.05 prints them (shortened), a running and a pending step.
  lines <- c(
    "StepId=5.0 UserId=0 StartTime=2026-12-02T00:54:43 TimeLimit=UNLIMITED State=RUNNING Partition=small NodeList=n3 Nodes=1 CPUs=2 Tasks=2 Name=holder Network=(null) SrunHost:Pid=vm:763",
    "StepId=5.TDB UserId=0 StartTime=Unknown TimeLimit=UNLIMITED State=PENDING Partition=small NodeList=n3 Nodes=1 CPUs=1 Tasks=1 Name=(null) Network=(null) SrunHost:Pid=login1.example.org:782",
    "scontrol: some other line")
  steps <- parallelly:::parse_slurm_steps(lines)
  expect_identical(steps$step, c("5.0", "5.TDB"))
  expect_identical(steps$job, c("5", "5"))
  expect_identical(steps$state, c("RUNNING", "PENDING"))
  expect_identical(steps$nodes, c("n3", "n3"))
  expect_identical(steps$srun_host, c("vm", "login1.example.org"))
  expect_identical(steps$srun_pid, c(763L, 782L))
  expect_identical(parallelly:::srun_options(NULL), "--overlap")
  expect_identical(parallelly:::srun_options("--exact --mem=100"), c("--exact", "--mem=100"))
  expect_identical(parallelly:::srun_options(c("-c", "1")), c("--overlap", "-c", "1"))
})

test_that("a master inside a job step of its own: its node's workers local, the others steps beside it", {
  skip_if_no_slurm()
  got <- in_job("srun", c("-N2", "-n4", "--", "-N1", "-n1"), bquote({
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<srun>", setup_strategy = "parallel")
    res <- list(master_step = Sys.getenv("SLURM_STEP_ID"),
                ran_on = unlist(parallel::clusterEvalQ(cl, Sys.getenv("SLURMD_NODENAME"))),
                local = vapply(cl, function(n) isTRUE(attr(n$host, "localhost")), NA),
                alive = isNodeAlive(cl))
    parallel::stopCluster(cl)
    res$left <- wait_for(function() length(steps_of_job()) <= 1L)  # the master's own step
    res
  }))
  expect_identical(got$master_step, "0")
  expect_identical(unname(got$ran_on), c("n3", "n3", "n4", "n4"))
  expect_identical(unname(got$local), c(TRUE, TRUE, FALSE, FALSE))
  expect_identical(got$alive, rep(TRUE, 4))
  expect_true(got$left)
})
