# Large transfers to and from a remote worker: our built-in SSH client's tunnel against
# OpenSSH's `ssh -R` tunnel, in one run, interleaved and repeated. Reports MB/s both ways
# (to the worker: clusterCall() with a raw vector argument; back: clusterEvalQ() of one
# made on the worker), medians with min-max, and the ratio ours/OpenSSH.
#
#   Rscript bench/ssh-transfer.R [--mb=256] [--reps=3]
#
# Peers: "ours" (built-in client), "ours-ssh" (our package with rshcmd = "ssh", the system's
# OpenSSH client and its -R tunnel) and "reference" (the reference parallelly, which always
# uses `ssh -R`), when installed (BENCH_REFERENCE_LIB, default /usr/lib/R/site-library).
# The SSH host: BENCH_SSH_CONFIG/BENCH_SSH_HOST when set (bench/run.R sets them and runs
# this file), else a test host started here (tools/ssh-test-hosts.sh; root and sshd). Where
# none can start, it says why and exits with status 0.
#
# Each measurement runs in a fresh R process (the two packages share a name):
#   Rscript bench/ssh-transfer.R --child <impl> <MB>   prints "<to MB/s> <back MB/s>"
local({
args <- commandArgs(TRUE)
self <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1]))

if (length(args) >= 3L && args[1] == "--child") {
  impl <- args[2]
  mb <- as.numeric(args[3])
  if (impl == "reference") .libPaths(c(Sys.getenv("BENCH_REFERENCE_LIB"), .libPaths()))
  suppressPackageStartupMessages(library(parallelly))
  stopifnot((impl == "reference") == (packageVersion("parallelly") < "2.0.0"))
  config <- Sys.getenv("BENCH_SSH_CONFIG")
  host <- Sys.getenv("BENCH_SSH_HOST")
  # Two workers, and the second is measured: the test hosts share this machine's network,
  # so the far end of `ssh -R` for worker 1 (the master's own port) cannot bind, and that
  # worker reaches the master directly, bypassing SSH; worker 2's tunnel port (one up) is
  # free, so its bytes go through ssh as on a real remote host.
  workers <- c(host, host)
  all <- switch(impl,
    ours = makeClusterPSOCK(workers),
    "ours-ssh" = makeClusterPSOCK(workers, rshcmd = "ssh", rshopts = c("-F", config)),
    reference = makeClusterPSOCK(workers, rshopts = c("-F", config), homogeneous = TRUE)
  )
  on.exit(parallel::stopCluster(all))
  cl <- all[2]
  n <- as.integer(mb * 1e6)
  elapsed <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }
  # Random bytes: nothing on the way may shrink them.
  random <- function(n) {
    con <- file("/dev/urandom", "rb", raw = TRUE)
    on.exit(close(con))
    readBin(con, "raw", n)
  }
  environment(random) <- globalenv()
  x <- random(n)
  parallel::clusterCall(cl, function(random) { y <<- random(1e6); NULL }, random)
  # A warm-up of 1 MB each way, then the timed transfers.
  stopifnot(parallel::clusterCall(cl, length, x[1:1e6])[[1]] == 1e6, length(parallel::clusterEvalQ(cl, y)[[1]]) == 1e6)
  to <- elapsed(got <- parallel::clusterCall(cl, length, x)[[1]])
  stopifnot(got == n)
  rm(x)
  parallel::clusterCall(cl, function(n, random) { y <<- random(n); NULL }, n, random)
  back <- elapsed(y <- parallel::clusterEvalQ(cl, y)[[1]])
  stopifnot(length(y) == n)
  cat(sprintf("%.6g %.6g\n", mb / to, mb / back))
  return(invisible())
}

opt <- function(name, default) {
  v <- sub(sprintf("^--%s=", name), "", grep(sprintf("^--%s=", name), args, value = TRUE)[1])
  if (is.na(v)) default else as.numeric(v)
}
mb <- opt("mb", 256)
reps <- opt("reps", 3)
rscript <- file.path(R.home("bin"), "Rscript")
root <- normalizePath(file.path(dirname(self), ".."))
reference_lib <- Sys.getenv("BENCH_REFERENCE_LIB", "/usr/lib/R/site-library")
Sys.setenv(BENCH_REFERENCE_LIB = reference_lib)
has_reference <- file.exists(file.path(reference_lib, "parallelly", "DESCRIPTION")) &&
  !grepl("^2\\.", read.dcf(file.path(reference_lib, "parallelly", "DESCRIPTION"), "Version"))

started <- NULL
if (!nzchar(Sys.getenv("BENCH_SSH_CONFIG"))) {
  why <- c(if (!identical(Sys.info()[["effective_user"]], "root")) "not running as root",
           if (!file.exists("/usr/sbin/sshd")) "/usr/sbin/sshd not installed")
  if (length(why)) {
    cat("ssh-transfer: skipped, no SSH test host can start here:", paste(why, collapse = "; "), "\n")
    return(invisible())
  }
  dir <- tempfile("parallelly-bench-transfer-", tmpdir = "/tmp")
  port <- as.character(22000L + sample.int(7999L, 1L))
  status <- system2("bash", c(file.path(root, "tools", "ssh-test-hosts.sh"), "start", dir, "1"),
                    env = c(sprintf("SSH_TEST_HOSTS_OWNER_PID=%d", Sys.getpid()),
                            sprintf("SSH_TEST_HOSTS_PORT=%s", port)))
  if (status != 0L) {
    cat("ssh-transfer: skipped, the SSH test host did not start\n")
    return(invisible())
  }
  started <- dir
  Sys.setenv(BENCH_SSH_CONFIG = file.path(dir, "ssh_config"), BENCH_SSH_HOST = "testhost1",
             R_PARALLELLY_SSH_CONFIG = file.path(dir, "ssh_config"),
             R_PARALLELLY_SSH_KNOWN_HOSTS = file.path(dir, "known_hosts"))
}
peers <- c("ours", if (file.exists("/usr/bin/ssh")) "ours-ssh", if (has_reference && file.exists("/usr/bin/ssh")) "reference")
rows <- list()
for (rep in seq_len(reps)) {
  for (impl in peers) {
    out <- suppressWarnings(system2(rscript, c(shQuote(self), "--child", impl, mb), stdout = TRUE, stderr = FALSE))
    v <- suppressWarnings(as.numeric(strsplit(utils::tail(c("", out), 1L), " ")[[1]]))
    if (length(v) != 2L) v <- c(NA_real_, NA_real_)
    rows[[length(rows) + 1L]] <- data.frame(impl = impl, rep = rep, to = v[1], back = v[2])
  }
}
if (!is.null(started)) invisible(system2("bash", c(file.path(root, "tools", "ssh-test-hosts.sh"), "stop", started), stdout = FALSE))
res <- do.call(rbind, rows)
fmt <- function(x) if (all(is.na(x))) "-" else sprintf("%.0f (%.0f-%.0f)", median(x, na.rm = TRUE), min(x, na.rm = TRUE), max(x, na.rm = TRUE))
tab <- do.call(rbind, lapply(peers, function(p) {
  d <- res[res$impl == p, ]
  data.frame(peer = p, "to worker MB/s" = fmt(d$to), "from worker MB/s" = fmt(d$back), check.names = FALSE)
}))
cat(sprintf("SSH tunnel transfers of %g MB (median (min-max) of %d):\n", mb, reps))
print(tab, right = FALSE, row.names = FALSE)
med <- function(p, col) median(res[res$impl == p, col], na.rm = TRUE)
openssh <- intersect(c("reference", "ours-ssh"), peers)
for (p in openssh) {
  cat(sprintf("ours/%s: to worker %.2f, from worker %.2f\n", p, med("ours", "to") / med(p, "to"),
              med("ours", "back") / med(p, "back")))
}
invisible(res)
})
