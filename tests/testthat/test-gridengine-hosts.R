# rshcmd = "<qrsh>" across hosts of the real Grid Engine test cluster (helper-gridengine.R):
# jobs in queue span.q, whose parallel environment spans this machine (the job's master host)
# and the exec hosts sgehost1 and sgehost2, each a namespace host with its own host name,
# PIDs and network address. Workers on those hosts are started by `qrsh -inherit` and
# connect back to the master by this machine's name.

# R code run in the job first: waits with a timeout, and the R workers of this run still
# running on a host (a `ps` task on it: the job has a free slot there once its workers stop).
span_setup <- quote({
  library(parallelly)
  wait_for <- function(f, timeout = 10) {
    deadline <- Sys.time() + timeout
    repeat {
      ok <- f()
      if (isTRUE(ok) || Sys.time() > deadline) return(ok)
      Sys.sleep(0.1)
    }
  }
  workers_on <- function(host) {
    out <- suppressWarnings(system2("timeout", c("20", "qrsh", "-inherit", "-nostdin", host, "ps", "-eo", "pid=,args="),
                                    stdout = TRUE, stderr = TRUE))
    if (!is.null(attr(out, "status"))) return(paste("ps failed:", paste(out, collapse = " ")))
    grep("MASTER=\\S+ PORT=", out, value = TRUE)
  }
})

# Evaluate `body` in a job of `slots` slots of PE smp in span.q, its master task on this
# machine (1 slot here, 2 on each exec host).
in_span_job <- function(body, slots = 5L, cluster = gridengine_test_cluster(), ...) {
  gridengine_r(bquote({ .(span_setup); .(body) }), slots = slots,
               args = c("-q", "span.q", "-masterq", paste0("span.q@", cluster$host)), cluster = cluster, ...)
}

skip_if_no_exec_hosts <- function(cluster) {
  if (length(cluster$exec_hosts) < 2L)
    skip_unavailable("Grid Engine exec hosts", "the test cluster has fewer than 2 exec hosts")
}

test_that("a PE spanning three hosts: qrsh workers on the others report their own host, kill, clone, stop", {
  cluster <- skip_if_no_gridengine()
  skip_if_no_exec_hosts(cluster)
  got <- in_span_job(quote({
    res <- list(host = Sys.info()[["nodename"]], workers = availableWorkers(), cores = availableCores(),
                sge = availableCores(methods = "SGE"), hostfile = readLines(Sys.getenv("PE_HOSTFILE")))
    t0 <- Sys.time()
    cl <- makeClusterPSOCK(availableWorkers(), rshcmd = "<qrsh>", setup_strategy = "parallel")
    res$setup <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res$kinds <- vapply(cl, function(n) attr(n, "process")$kind, "")
    res$info <- parallel::clusterEvalQ(cl, list(host = Sys.info()[["nodename"]], pid = Sys.getpid(),
                                                job = Sys.getenv("JOB_ID"),
                                                master = grep("^MASTER=", commandArgs(), value = TRUE)))
    res$job <- Sys.getenv("JOB_ID")
    # A file in this machine's /tmp: the exec hosts have a /tmp of their own.
    marker <- tempfile("sgehosts-marker-", tmpdir = "/tmp")
    file.create(marker)
    res$sees_marker <- unlist(parallel::clusterCall(cl, file.exists, marker))
    unlink(marker)
    t1 <- Sys.time()
    res$alive <- isNodeAlive(cl, timeout = 2)
    res$alive_secs <- as.numeric(difftime(Sys.time(), t1, units = "secs"))
    remote <- which(res$kinds == "qrsh")
    k <- remote[1]
    res$victim <- k
    t1 <- Sys.time()
    res$killed <- killNode(cl[[k]], timeout = 5)
    res$dead <- wait_for(function() identical(isNodeAlive(cl[[k]], timeout = 2), FALSE))
    res$dead_secs <- as.numeric(difftime(Sys.time(), t1, units = "secs"))
    res$others_alive <- isNodeAlive(cl[-k], timeout = 2)
    res$exit <- summary(cl)$exit
    cl[[k]] <- cloneNode(cl[[k]])
    res$clone <- parallel::clusterEvalQ(cl[k], list(host = Sys.info()[["nodename"]], pid = Sys.getpid()))[[1]]
    res$sum <- unlist(parallel::parLapply(cl, seq_along(cl), function(x) x^2))
    parallel::stopCluster(cl)
    # Once stopped, the job's slots on the exec hosts are free again for a `ps` task there.
    res$left <- wait_for(function() {
      left <- lapply(c("sgehost1", "sgehost2"), workers_on)
      if (all(lengths(left) == 0L)) TRUE else left
    }, timeout = 15)
    res
  }))
  hosts <- c(cluster$host, "sgehost1", "sgehost2")
  expect_identical(got$host, cluster$host)
  # The PE_HOSTFILE, in its order: this machine first (1 slot), then the exec hosts (2 each).
  expect_identical(got$workers, rep(hosts, c(1L, 2L, 2L)))
  expect_true(all(mapply(grepl, sprintf("^%s %d span\\.q@%s ", hosts, c(1L, 2L, 2L), hosts), got$hostfile)),
              info = paste(got$hostfile, collapse = "\n"))
  # availableCores() in the job: this host's slots, not the job's 5 (named "system" on a
  # machine of one core: the two agree).
  expect_identical(got$sge, c(SGE = 1L))
  expect_identical(unname(got$cores), 1L)
  expect_identical(unname(got$kinds[2:5]), rep("qrsh", 4L))
  expect_true(got$kinds[1] %in% c("local", "fork"))
  # Each worker runs on its own host, with its own PID there, as a task of the master's job.
  expect_identical(vapply(got$info, `[[`, "", "host"), got$workers)
  expect_identical(unique(vapply(got$info, `[[`, "", "job")), got$job)
  pids <- vapply(got$info, `[[`, 1L, "pid")
  expect_identical(length(unique(paste(got$workers, pids))), 5L)
  expect_identical(got$alive, rep(TRUE, 5L))
  expect_lt(got$alive_secs, 2)
  expect_true(got$killed)
  expect_true(got$dead)
  expect_lt(got$dead_secs, 10)
  expect_identical(got$others_alive, rep(TRUE, 4L))
  expect_match(got$exit[got$victim], "killed by signal 15 \\(SIGTERM\\) \\(Grid Engine task of job [0-9]+\\)")
  # The clone is a new worker on the same host.
  expect_identical(got$clone$host, got$workers[got$victim])
  expect_false(identical(got$clone$pid, pids[got$victim]))
  expect_identical(got$sum, as.numeric((1:5)^2))
  expect_identical(got$sees_marker, c(TRUE, FALSE, FALSE, FALSE, FALSE))
  # Workers on the exec hosts connect back to the master by this machine's name.
  expect_identical(vapply(got$info[2:5], `[[`, "", "master"), rep(paste0("MASTER=", cluster$host), 4L))
  # No worker is left on any exec host.
  expect_true(isTRUE(got$left), info = paste(unlist(got$left), collapse = "\n"))
  expect_lt(got$setup, 30)
})

test_that("an exec host whose sge_execd is stopped: isNodeAlive() answers within its timeout, no hang", {
  cluster <- skip_if_no_gridengine()
  skip_if_no_exec_hosts(cluster)
  restart <- function() {
    out <- suppressWarnings(system2("bash", c(shQuote(cluster$script), "start-execd", shQuote(cluster$dir), "sgehost1"),
                                    stdout = TRUE, stderr = TRUE))
    if (!is.null(attr(out, "status"))) warning("restarting sgehost1's execd failed:\n", paste(out, collapse = "\n"))
  }
  on.exit(restart())
  got <- in_span_job(bquote({
    cl <- makeClusterPSOCK(c("sgehost1", "sgehost2"), rshcmd = "<qrsh>", setup_strategy = "parallel")
    res <- list(before = isNodeAlive(cl, timeout = 2))
    # Stop sgehost1's execd by its PID (as the host's init recorded it), through a task there.
    # (qrsh passes its words to the host's shell: one word, quoted for the local one.)
    res$stopped <- system2("qrsh", c("-inherit", "-nostdin", "sgehost1",
                                     shQuote(sprintf("kill -TERM $(cat %s)", .(file.path(cluster$dir, "sgehost1.daemons.nspid"))))))
    # Gone: a new task there is refused.
    res$execd_gone <- wait_for(function() {
      system2("timeout", c("10", "qrsh", "-inherit", "-nostdin", "sgehost1", "true"), stdout = FALSE, stderr = FALSE) != 0L
    }, timeout = 10)
    t0 <- Sys.time()
    res$alive <- isNodeAlive(cl, timeout = 2)
    res$alive_secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res$hosts <- tryCatch(unlist(parallel::clusterEvalQ(cl, Sys.info()[["nodename"]])), error = conditionMessage)
    t0 <- Sys.time()
    res$killed <- killNode(cl[[1]], timeout = 2)
    res$dead <- wait_for(function() identical(isNodeAlive(cl[[1]], timeout = 2), FALSE))
    res$kill_secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    t0 <- Sys.time()
    parallel::stopCluster(cl)
    res$stop_secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    res
  }))
  expect_identical(got$before, c(TRUE, TRUE))
  expect_identical(got$stopped, 0L)
  expect_true(got$execd_gone)
  # The probe is local (the task's qrsh client): it answers at once. Without its execd the
  # host's running tasks live on (their shepherds do not depend on it), and so does the worker.
  expect_lt(got$alive_secs, 2)
  expect_true(is.logical(got$alive) && length(got$alive) == 2L)
  expect_identical(got$alive[2], TRUE)
  expect_true(got$killed)
  expect_true(got$dead)
  expect_lt(got$kill_secs, 10)
  expect_lt(got$stop_secs, 2)
})
