# One measurement in a fresh R process, so that our package and the reference package
# (same name, another library) never meet in one session. Prints one number (seconds, or
# bytes for "memory"), or NA when the implementation cannot do it.
#   Rscript bench/measure.R <ours|plain|base|base-tuned|reference> <measure> <n>
#   Rscript bench/measure.R <impl> <measure,measure,...> <n,n,...>   several in one process
#     (the smoke run: prints "measure n value" lines; BENCH_QUICK=1 also cuts repetitions)
# "ours" is our package as it comes (workers forked by a fork server); "plain" is ours with
# setup_strategy = "parallel" (a fresh R per worker).
# "base-tuned" is base parallel with useXDR = FALSE and TCP_NODELAY on both ends
# (options(socketOptions = "no-delay"), set on the worker before it connects back).
args <- commandArgs(TRUE)
impl <- args[1]
tuned <- impl == "base-tuned"
if (tuned) {
  options(socketOptions = "no-delay")
  impl <- "base"
}
whats <- strsplit(args[2], ",", fixed = TRUE)[[1]]
ns <- as.integer(strsplit(args[3], ",", fixed = TRUE)[[1]])
quick <- nzchar(Sys.getenv("BENCH_QUICK"))
# Repetitions: a tenth in the smoke run, which checks that each measure runs, not its figure.
scale <- function(k) if (quick) max(1L, k %/% 10L) else k
if (impl == "reference") .libPaths(c(Sys.getenv("BENCH_REFERENCE_LIB"), .libPaths()))
if (impl != "base") suppressPackageStartupMessages(library(parallelly))
if (impl != "base" && impl == "reference" && packageVersion("parallelly") >= "2.0.0") stop("reference library holds our package")
if (impl %in% c("ours", "plain") && packageVersion("parallelly") < "2.0.0") stop("our package is not first on the library path")
if (impl == "plain") {
  options(parallelly.makeNodePSOCK.setup_strategy = "parallel")
  impl <- "ours"
}

config <- Sys.getenv("BENCH_SSH_CONFIG")
host <- Sys.getenv("BENCH_SSH_HOST", "testhost3")
elapsed <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }

local_cluster <- function(n) {
  switch(impl,
    base = if (tuned) {
      cl <- parallel::makePSOCKcluster(n, useXDR = FALSE,
                                       rscript_args = c("-e", shQuote("options(socketOptions = 'no-delay')")))
      # Check that the tuning took effect: the worker connects after the option is set.
      stopifnot(inherits(cl[[1]], "SOCK0node"),
                all(unlist(parallel::clusterEvalQ(cl, getOption("socketOptions"))) == "no-delay"))
      cl
    } else parallel::makePSOCKcluster(n),
    makeClusterPSOCK(I(n))
  )
}
remote_cluster <- function(n) {
  workers <- rep(host, n)
  switch(impl,
    ours = makeClusterPSOCK(workers),
    reference = makeClusterPSOCK(workers, rshopts = c("-F", config), homogeneous = TRUE),
    NULL
  )
}
# `per_host` workers on each of `n` hosts (testhost8, testhost9, ...: plain bash hosts, our
# package in the login user's library; see bench/run.R).
hosts_cluster <- function(n, per_host) {
  workers <- rep(sprintf("testhost%d", 7L + seq_len(n)), each = per_host)
  switch(impl,
    ours = makeClusterPSOCK(workers),
    # Its reverse tunnels take the ports port, port + 1, ... on this machine, whose default
    # range (11000-11999) other R sessions here use too; one try: a failure is NA, not minutes.
    reference = makeClusterPSOCK(workers, rshopts = c("-F", config), homogeneous = TRUE,
                                 port = sample(30000:39000, 1L), tries = 1L, connectTimeout = 60),
    NULL
  )
}
# Mean seconds per call of `f` over `reps` calls: the fastest of 5 blocks.
per_call <- function(f, reps, then = NULL) {
  best <- Inf
  for (block in seq_len(if (quick) 1L else 5L)) best <- min(best, elapsed(for (i in seq_len(reps)) f()) / reps)
  force(then)
  best
}
# Proportional set size of a process (bytes): shared pages count by their share.
pss <- function(pid) {
  line <- grep("^Pss:", readLines(sprintf("/proc/%d/smaps_rollup", pid)), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) * 1024
}
tiny <- function(x) x
# Another process busy on one core (pinned to the first): the machine as users run it, N
# workers on N cores plus whatever else it does. Returns the function that stops it.
busy_core <- function() {
  pid <- as.integer(system("taskset -c 0 sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!", intern = TRUE))
  stopifnot(length(pid) == 1L, !is.na(pid))
  Sys.sleep(0.1)
  function() {
    tools::pskill(pid, tools::SIGKILL)
    invisible()
  }
}
# CPU seconds every core of this machine has been busy since boot (/proc/stat).
machine_busy <- function() {
  f <- as.numeric(strsplit(trimws(sub("^cpu", "", readLines("/proc/stat", n = 1L))), " +")[[1]])
  # user nice system idle iowait irq softirq steal: all but idle and iowait.
  sum(f[c(1:3, 6:8)]) / 100
}
rss <- function() {
  line <- grep("^VmRSS:", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) * 1024
}

measure <- function(what, n) switch(what,
  setup_local = {
    t <- elapsed(cl <- local_cluster(n))
    parallel::stopCluster(cl)
    t
  },
  setup_remote = {
    if (impl == "base") NA else {
      t <- elapsed(cl <- remote_cluster(n))
      parallel::stopCluster(cl)
      t
    }
  },
  # Setup of 2 workers on each of n hosts, all at once (issue 24).
  hosts = {
    if (impl == "base") NA else {
      t <- elapsed(cl <- hosts_cluster(n, 2L))
      parallel::stopCluster(cl)
      t
    }
  },
  # The CPU time the whole machine spends on that setup (ours): with the test hosts on this
  # machine's own cores, it bounds how fast n hosts can start here at all.
  hosts_cpu = {
    if (impl != "ours") NA else {
      b0 <- machine_busy()
      cl <- hosts_cluster(n, 2L)
      b1 <- machine_busy()
      parallel::stopCluster(cl)
      b1 - b0
    }
  },
  # 8 workers on each of n hosts (not the reference: it starts one worker after another,
  # about 1 s each).
  hosts_x8 = {
    if (impl %in% c("base", "reference")) NA else {
      t <- elapsed(cl <- hosts_cluster(n, 8L))
      parallel::stopCluster(cl)
      t
    }
  },
  alive_local = {
    if (impl == "base") NA else {
      cl <- local_cluster(n)
      reps <- scale(20L)
      t <- elapsed(for (i in seq_len(reps)) isNodeAlive(cl)) / reps
      parallel::stopCluster(cl)
      t
    }
  },
  alive_remote = {
    if (impl == "base") NA else {
      cl <- remote_cluster(n)
      reps <- if (impl == "ours") scale(50L) else 3L
      t <- elapsed(for (i in seq_len(reps)) stopifnot(all(isNodeAlive(cl)))) / reps
      parallel::stopCluster(cl)
      t
    }
  },
  ssh_rscript = {
    # The reference's probe mechanism by hand: a fresh ssh login plus Rscript per probe.
    if (impl != "base") NA else elapsed(system2("ssh", c("-F", config, host, "Rscript -e 'cat(1)'"), stdout = TRUE))
  },
  kill_local = {
    if (impl == "base") NA else {
      cl <- local_cluster(1)
      t <- elapsed(killNode(cl[[1]]))
      parallel::stopCluster(cl)
      t
    }
  },
  clone_local = {
    if (impl == "base") NA else {
      cl <- local_cluster(1)
      t <- elapsed(cl2 <- cloneNode(cl[[1]]))
      parallel::stopCluster(cl)
      parallel::stopCluster(as.cluster(cl2))
      t
    }
  },
  clone_remote = {
    if (impl == "base") NA else {
      cl <- remote_cluster(1)
      t <- elapsed(cl2 <- cloneNode(cl[[1]]))
      parallel::stopCluster(c(cl, as.cluster(cl2)))
      t
    }
  },
  # Per-call costs in steady state: after a warm-up (lazy loading, byte compilation and
  # first-call costs of each package), the fastest of 5 blocks (the least disturbed by
  # other processes on this shared machine).
  roundtrip = {
    cl <- local_cluster(2)
    node <- cl[1]
    for (i in seq_len(scale(200L))) parallel::clusterEvalQ(node, NULL)
    per_call(function() parallel::clusterEvalQ(node, NULL), reps = scale(300L), then = parallel::stopCluster(cl))
  },
  roundtrip_load = {
    # The round trip above while another process keeps one core busy.
    cl <- local_cluster(2)
    node <- cl[1]
    stop_busy <- busy_core()
    on.exit(stop_busy())
    for (i in seq_len(scale(200L))) parallel::clusterEvalQ(node, NULL)
    per_call(function() parallel::clusterEvalQ(node, NULL), reps = scale(300L), then = parallel::stopCluster(cl))
  },
  roundtrip_2 = {
    # clusterEvalQ() on both workers of a 2-worker cluster.
    cl <- local_cluster(2)
    for (i in seq_len(scale(100L))) parallel::clusterEvalQ(cl, NULL)
    per_call(function() parallel::clusterEvalQ(cl, NULL), reps = scale(200L), then = parallel::stopCluster(cl))
  },
  parlapplylb = {
    # Seconds per task: 200 tiny tasks, one per chunk, load-balanced over 2 workers.
    cl <- local_cluster(2)
    for (i in seq_len(scale(3L))) parallel::parLapplyLB(cl, 1:200, tiny, chunk.size = 1)
    per_call(function() parallel::parLapplyLB(cl, 1:200, tiny, chunk.size = 1), reps = scale(3L),
             then = parallel::stopCluster(cl)) / 200
  },
  parlapplylb_load = {
    # The tiny load-balanced tasks above while another process keeps one core busy.
    cl <- local_cluster(2)
    stop_busy <- busy_core()
    on.exit(stop_busy())
    for (i in seq_len(scale(3L))) parallel::parLapplyLB(cl, 1:200, tiny, chunk.size = 1)
    per_call(function() parallel::parLapplyLB(cl, 1:200, tiny, chunk.size = 1), reps = scale(3L),
             then = parallel::stopCluster(cl)) / 200
  },
  clusterapply = {
    # Seconds per task: clusterApply() of 200 tiny tasks over 2 workers.
    cl <- local_cluster(2)
    for (i in seq_len(scale(3L))) parallel::clusterApply(cl, 1:200, tiny)
    per_call(function() parallel::clusterApply(cl, 1:200, tiny), reps = scale(3L),
             then = parallel::stopCluster(cl)) / 200
  },
  node_size = {
    # Bytes of one serialized node object (future serializes and hashes the cluster).
    cl <- local_cluster(2)
    size <- length(serialize(cl[[1]], NULL))
    parallel::stopCluster(cl)
    size
  },
  digest_cluster = {
    # digest::digest() of a 2-node cluster: future hashes the cluster for every future.
    cl <- local_cluster(2)
    # 2000 calls a block: elapsed time is read in whole milliseconds, and one call takes ~20 us.
    for (i in seq_len(scale(100L))) digest::digest(cl)
    per_call(function() digest::digest(cl), reps = scale(2000L), then = parallel::stopCluster(cl))
  },
  pss_idle = {
    # Summed PSS of 8 idle workers (the workers only; not the master nor a fork server).
    cl <- local_cluster(8)
    # No gc() on the workers: a collection writes to every page and undoes the sharing of forked pages.
    pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
    Sys.sleep(0.5)
    total <- sum(vapply(pids, pss, 0))
    parallel::stopCluster(cl)
    total
  },
  roundtrip_5k = {
    # A master-to-worker message of 5 KB: larger than one Nagle-held segment.
    cl <- local_cluster(2)
    node <- cl[1]
    arg <- as.raw(seq_len(5000) %% 256)
    for (i in seq_len(scale(50L))) parallel::clusterCall(node, length, arg)
    per_call(function() parallel::clusterCall(node, length, arg), reps = scale(50L), then = parallel::stopCluster(cl))
  },
  future_null = {
    # future's own per-future work (availableCores(), globals, connection checks) included.
    if (impl == "base") NA else {
      suppressPackageStartupMessages(library(future))
      plan(multisession, workers = 2)
      for (i in seq_len(scale(10L))) value(future(NULL))
      per_call(function() value(future(NULL)), reps = scale(20L), then = plan(sequential))
    }
  },
  available_cores = {
    if (impl == "base") NA else {
      for (i in seq_len(scale(5L))) availableCores()
      per_call(function() availableCores(), reps = scale(50L))
    }
  },
  connection_valid = {
    if (impl == "base") NA else {
      con <- rawConnection(raw(0L), open = "r")
      for (i in seq_len(scale(20L))) isConnectionValid(con)
      per_call(function() isConnectionValid(con), reps = scale(500L), then = close(con))
    }
  },
  stop_local = {
    cl <- local_cluster(n)
    parallel::clusterEvalQ(cl, NULL)
    # Collect the setup's garbage first: a collection falling inside the timed call would
    # be the setup's cost, and would make the figure a lottery (~50 ms either way).
    gc()
    elapsed(parallel::stopCluster(cl))
  },
  parlapply = {
    cl <- local_cluster(2)
    for (i in seq_len(scale(20L))) parallel::parLapply(cl, 1:1000, sqrt)
    per_call(function() parallel::parLapply(cl, 1:1000, sqrt), reps = scale(30L), then = parallel::stopCluster(cl))
  },
  memory = {
    gc()
    before <- rss()
    cl <- local_cluster(8)
    parallel::clusterEvalQ(cl, NULL)
    gc()
    after <- rss()
    parallel::stopCluster(cl)
    after - before
  },
  stop("unknown measure: ", what)
)
if (length(whats) == 1L) {
  cat(format(measure(whats, ns), digits = 6), "\n")
} else {
  for (k in seq_along(whats)) {
    value <- tryCatch(measure(whats[k], ns[k]), error = function(e) NA_real_)
    cat(whats[k], ns[k], format(value, digits = 6), "\n")
  }
}
