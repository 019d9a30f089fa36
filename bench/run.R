# Benchmarks, run on demand: our package against base R's parallel and, when it is
# installed in another library, the reference parallelly package. Each measurement runs in
# a fresh R process (bench/measure.R); implementations are interleaved and repeated, and
# the table gives medians with min-max and the ratios ours/peer.
#
#   Rscript bench/run.R            full run (several minutes; starts SSH test hosts as root)
#   Rscript bench/run.R --quick    smoke run (CI): every measure once, small cases, our package
#                                  only, all in one R process with a tenth of the repetitions
#   Rscript bench/run.R --only=REGEX   only the measures whose name matches REGEX
#
# The reference package: Debian's r-cran-parallelly, which lives in /usr/lib/R/site-library
# (our package is installed in front of it, in /usr/local/lib/R/site-library); set
# BENCH_REFERENCE_LIB to use another library.
args <- commandArgs(TRUE)
quick <- "--quick" %in% args
only <- sub("^--only=", "", grep("^--only=", args, value = TRUE)[1])
reps <- if (quick) 1L else 5L
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
measure_script <- file.path(root, "bench", "measure.R")

reference_lib <- Sys.getenv("BENCH_REFERENCE_LIB", "/usr/lib/R/site-library")
has_reference <- file.exists(file.path(reference_lib, "parallelly", "DESCRIPTION")) &&
  !grepl("^2\\.", read.dcf(file.path(reference_lib, "parallelly", "DESCRIPTION"), "Version"))
Sys.setenv(BENCH_REFERENCE_LIB = reference_lib)
impls <- c("ours", "plain", "base", "base-tuned", if (has_reference) "reference")
# Where the fork server (our default) makes a difference: starting workers (and their
# memory). "plain" is ours with setup_strategy = "parallel": a fresh R per worker.
plain_measures <- c("setup_local", "setup_remote", "hosts", "hosts_x8", "clone_local", "clone_remote", "kill_local", "alive_local", "pss_idle",
                    "stop_local")
# Where base parallel's own tuning (useXDR = FALSE, TCP_NODELAY) makes a difference.
tuned_measures <- c("roundtrip", "roundtrip_load", "roundtrip_2", "roundtrip_5k", "parlapplylb", "parlapplylb_load",
                    "clusterapply")
# Measures of bytes, not seconds.
byte_measures <- c("memory", "pss_idle", "node_size")

# SSH test hosts for the remote cases (root with sshd only).
remote <- !quick && identical(Sys.info()[["effective_user"]], "root") && file.exists("/usr/sbin/sshd")
if (remote) {
  dir <- tempfile("parallelly-bench-ssh-", tmpdir = "/tmp")
  Sys.setenv(SSH_TEST_HOSTS_OWNER_PID = Sys.getpid())
  # testhost3 has our package in its login user's library (the fork server needs it; on
  # testhost1 and 2 a "fork" setup falls back to plain workers); so have testhost8..23, the
  # plain hosts of the many-host measure ("hosts").
  # A port of this run's own (unless one is given): another run's hosts may hold 2222.
  if (!nzchar(Sys.getenv("SSH_TEST_HOSTS_PORT"))) Sys.setenv(SSH_TEST_HOSTS_PORT = parallelly::freePort(22000:29999))
  Sys.setenv(SSH_TEST_HOSTS_PACKAGE = find.package("parallelly"),
             SSH_TEST_HOSTS_PACKAGE_HOSTS = paste(c(3L, 8:23), collapse = " "))
  status <- system2("bash", c(file.path(root, "tools", "ssh-test-hosts.sh"), "start", dir, "23"))
  remote <- status == 0L
  if (remote) {
    Sys.setenv(BENCH_SSH_CONFIG = file.path(dir, "ssh_config"), BENCH_SSH_HOST = "testhost3",
               R_PARALLELLY_SSH_CONFIG = file.path(dir, "ssh_config"),
               R_PARALLELLY_SSH_KNOWN_HOSTS = file.path(dir, "known_hosts"))
  }
}

cases <- rbind(
  data.frame(measure = "setup_local", n = if (quick) c(1L, 2L) else c(1L, 2L, 4L, 8L, 16L, 32L, 64L)),
  data.frame(measure = "alive_local", n = if (quick) 1L else c(1L, 32L)),
  data.frame(measure = c("kill_local", "clone_local", "roundtrip", "roundtrip_5k", "future_null", "available_cores",
                         "connection_valid", "parlapply", "memory", "roundtrip_2", "parlapplylb", "clusterapply",
                         "roundtrip_load", "parlapplylb_load",
                         "node_size", "digest_cluster", "pss_idle"), n = 1L),
  data.frame(measure = "stop_local", n = if (quick) 2L else c(8L, 32L, 64L)),
  if (remote) data.frame(measure = "setup_remote", n = c(1L, 4L, 16L)),
  if (remote) data.frame(measure = "hosts", n = c(1L, 2L, 4L, 8L, 16L)),
  # 12 hosts, not 16: R before 4.4 has 128 connections, 3 of them the standard streams, and
  # each host's fork server takes one too (16 x 8 workers need R >= 4.4 started with
  # --max-connections).
  if (remote) data.frame(measure = "hosts_x8", n = c(1L, 12L)),
  if (remote) data.frame(measure = "hosts_cpu", n = c(1L, 8L)),
  if (remote) data.frame(measure = c("alive_remote", "alive_remote", "clone_remote", "ssh_rscript"), n = c(1L, 32L, 1L, 1L))
)
if (!is.na(only)) cases <- cases[grepl(only, cases$measure), , drop = FALSE]

# A measurement that hangs (the reference waiting for a worker whose reverse tunnel could
# not take its port, say) is NA after 5 minutes.
run_one <- function(impl, measure, n) {
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c(measure_script, impl, measure, n),
                                  stdout = TRUE, stderr = FALSE, timeout = 300))
  value <- suppressWarnings(as.numeric(utils::tail(out, 1L)))
  if (length(value) == 0L) NA_real_ else value
}

# The smoke run: one process measures every case for our package (it checks that each
# measure works, not the figures, which need the fresh processes and repetitions below).
run_quick <- function(cases) {
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"),
                                  c(measure_script, "ours", paste(cases$measure, collapse = ","), paste(cases$n, collapse = ",")),
                                  stdout = TRUE, stderr = FALSE, env = "BENCH_QUICK=1"))
  lines <- strsplit(trimws(grep("^[a-z_0-9]+ [0-9]+ ", out, value = TRUE)), " +")
  got <- data.frame(measure = vapply(lines, `[`, "", 1L), n = as.integer(vapply(lines, `[`, "", 2L)),
                    value = suppressWarnings(as.numeric(vapply(lines, `[`, "", 3L))))
  value <- got$value[match(paste(cases$measure, cases$n), paste(got$measure, got$n))]
  data.frame(measure = cases$measure, n = cases$n, impl = "ours", rep = 1L, value = value)
}

results <- list()
if (quick) results[[1L]] <- run_quick(cases)
for (i in seq_len(if (quick) 0L else nrow(cases))) {
  # The largest clusters take seconds per setup: fewer repetitions.
  case_reps <- if (cases$n[i] >= 64L) min(reps, 2L) else if (cases$n[i] >= 32L) min(reps, 3L) else reps
  # Setups of 1-4 local workers take ~0.2 s, and the per-call measures of issue 26 (round
  # trips and tiny load-balanced tasks, quiet and with one core busy) a few seconds; their
  # medians vary by +-20% from one run to the next here with 5 repetitions: 9 of them.
  small <- (cases$measure[i] == "setup_local" && cases$n[i] <= 4L) ||
    cases$measure[i] %in% c("roundtrip", "roundtrip_load", "parlapplylb", "parlapplylb_load")
  if (small && !quick) case_reps <- 2L * reps - 1L
  # Many hosts: the reference takes ~1 s a worker.
  if (startsWith(cases$measure[i], "hosts")) case_reps <- min(reps, 3L)
  for (rep in seq_len(case_reps)) {
    for (impl in impls) {
      skip <- (impl == "plain" && !cases$measure[i] %in% plain_measures) ||
        (impl == "base-tuned" && !cases$measure[i] %in% tuned_measures)
      value <- if (skip) NA_real_ else run_one(impl, cases$measure[i], cases$n[i])
      results[[length(results) + 1L]] <- data.frame(measure = cases$measure[i], n = cases$n[i], impl = impl,
                                                    rep = rep, value = value)
    }
  }
  cat(".")
}
cat("\n")
# Large transfers through the SSH tunnel, ours against OpenSSH's (prints its own table).
if (remote && (is.na(only) || grepl(only, "ssh_transfer"))) system2(file.path(R.home("bin"), "Rscript"), file.path(root, "bench", "ssh-transfer.R"))
if (remote) system2("bash", c(file.path(root, "tools", "ssh-test-hosts.sh"), "stop", dir))
# A Slurm cluster of 8 workers on 4 nodes in one sbatch job (prints its own table; says why
# and goes on where the Slurm test cluster cannot start).
if (!quick && (is.na(only) || grepl(only, "slurm_setup"))) system2(file.path(R.home("bin"), "Rscript"), file.path(root, "bench", "slurm-setup.R"))
# 8 workers through qrsh in one Grid Engine job (prints its own table; says why and goes on
# where the Grid Engine test cluster cannot start).
if (!quick && (is.na(only) || grepl(only, "gridengine_setup"))) system2(file.path(R.home("bin"), "Rscript"), file.path(root, "bench", "gridengine-setup.R"))
results <- do.call(rbind, results)

fmt <- function(x, measure) {
  x <- x[!is.na(x)]
  if (length(x) == 0L) return("-")
  if (measure == "node_size") return(sprintf("%.0f B (%.0f-%.0f)", median(x), min(x), max(x)))
  if (measure %in% byte_measures) return(sprintf("%.1f MiB (%.1f-%.1f)", median(x) / 2^20, min(x) / 2^20, max(x) / 2^20))
  sprintf("%.4g s (%.4g-%.4g)", median(x), min(x), max(x))
}
table <- do.call(rbind, lapply(split(results, list(results$measure, results$n), drop = TRUE), function(d) {
  med <- function(impl) median(d$value[d$impl == impl], na.rm = TRUE)
  row <- data.frame(measure = d$measure[1], n = d$n[1])
  for (impl in impls) row[[impl]] <- fmt(d$value[d$impl == impl], d$measure[1])
  ratio <- function(a, b) if (is.na(med(a)) || is.na(med(b))) "-" else sprintf("%.3f", med(a) / med(b))
  row[["ours/base"]] <- ratio("ours", "base")
  row[["plain/base"]] <- ratio("plain", "base")
  row[["ours/base-tuned"]] <- ratio("ours", "base-tuned")
  if (has_reference) {
    row[["ours/reference"]] <- ratio("ours", "reference")
    row[["plain/reference"]] <- ratio("plain", "reference")
  }
  row
}))
table <- table[order(table$measure, table$n), ]
rownames(table) <- NULL
# The reference mechanism for a remote probe is timed under "base" (plain ssh + Rscript).
print(table, right = FALSE)
if (!has_reference) cat("(reference parallelly not found in", reference_lib, ")\n")
# Many hosts against one (issue 24's targets: 8 x 2 workers <= 1.5 x, 16 x 8 <= 2.5 x 1 x 2;
# here 12 x 8, see above).
one_host <- function(impl, measure, n) median(results$value[results$impl == impl & results$measure == measure & results$n == n], na.rm = TRUE)
for (impl in intersect(c("ours", "plain", "reference"), impls)) {
  base1 <- one_host(impl, "hosts", 1L)
  if (is.na(base1)) next
  cat(sprintf("Many hosts (%s): 8 hosts x 2 / 1 x 2 = %.2f; 12 x 8 / 1 x 2 = %.2f\n", impl,
              one_host(impl, "hosts", 8L) / base1, one_host(impl, "hosts_x8", 12L) / base1))
}
# The test hosts share this machine's cores with the master: the CPU an 8-host setup needs,
# spread over every core, is the least time it can take here.
cpu8 <- one_host("ours", "hosts_cpu", 8L)
if (!is.na(cpu8) && !is.na(one_host("ours", "hosts", 1L))) {
  cores <- parallel::detectCores()
  cat(sprintf("Many hosts (ours): 8 x 2 needs %.2f s of CPU (1 x 2: %.2f s); on %d cores at least %.2f s = %.2f x the 1 x 2 setup\n",
              cpu8, one_host("ours", "hosts_cpu", 1L), cores, cpu8 / cores, cpu8 / cores / one_host("ours", "hosts", 1L)))
}

out_dir <- file.path(root, "bench", "results")
dir.create(out_dir, showWarnings = FALSE)
# A partial run (--only) does not overwrite the full run's results.
utils::write.csv(results, file.path(out_dir, if (is.na(only)) "results.csv" else "results-partial.csv"), row.names = FALSE)
cols <- c(ours = "firebrick", plain = "darkorange", base = "grey30", "base-tuned" = "grey65", reference = "steelblue")
# Setup time of `measure` against n, log-log, one line per peer.
setup_plot <- function(measure, file, xlab, main) {
  d <- results[results$measure == measure & !is.na(results$value), ]
  if (nrow(d) == 0L || quick) return(invisible())
  grDevices::png(file.path(out_dir, file), width = 800, height = 500)
  meds <- aggregate(value ~ impl + n, data = d, FUN = median)
  peers <- intersect(names(cols), unique(meds$impl))
  plot(NA, xlim = range(meds$n), ylim = range(meds$value), log = "xy", xlab = xlab,
       ylab = "setup time (s, median)", main = main, xaxt = "n")
  axis(1, at = sort(unique(meds$n)))
  for (impl in peers) {
    m <- meds[meds$impl == impl, ]
    lines(m$n, m$value, type = "b", col = cols[[impl]], pch = 19, lwd = 2)
  }
  legend("topleft", legend = peers, col = cols[peers], lwd = 2, pch = 19)
  grDevices::dev.off()
  cat("Plot:", file.path(out_dir, file), "\n")
}
# (a) Local workers; (a2) many hosts, 2 workers each.
setup_plot("setup_local", "setup-local.png", "local workers (n)", "makeClusterPSOCK() setup time (log-log)")
setup_plot("hosts", "setup-hosts.png", "SSH hosts (2 workers each)", "makeClusterPSOCK() over many hosts (log-log)")
# (b) Per-task costs as grouped bars per peer (microseconds, medians).
per_task <- c(roundtrip = "round trip (1 node)", parlapplylb = "parLapplyLB per task",
              clusterapply = "clusterApply per task")
tasks <- results[results$measure %in% names(per_task) & !is.na(results$value), ]
if (nrow(tasks) > 0L && !quick) {
  meds <- aggregate(value ~ impl + measure, data = tasks, FUN = median)
  peers <- intersect(names(cols), unique(meds$impl))
  m <- matrix(NA_real_, length(peers), length(per_task), dimnames = list(peers, per_task))
  for (k in seq_len(nrow(meds))) m[meds$impl[k], per_task[[meds$measure[k]]]] <- meds$value[k] * 1e6
  grDevices::png(file.path(out_dir, "per-task.png"), width = 800, height = 500)
  barplot(m, beside = TRUE, col = cols[peers], legend.text = peers, ylab = "microseconds (median)",
          ylim = c(0, 1.3 * max(m, na.rm = TRUE)), main = "Per-task cost, 2 local workers",
          args.legend = list(x = "top", horiz = TRUE, bty = "n"))
  grDevices::dev.off()
  cat("Plot:", file.path(out_dir, "per-task.png"), "\n")
}
