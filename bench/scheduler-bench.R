# What bench/slurm-setup.R and bench/gridengine-setup.R share: a scheduler test cluster of
# tools/ started for the measure and stopped after it, and a table that compares our node
# kind with the rshcmd recipe, job by job. Sourced by them (local = TRUE).

# The --reps=N argument (default 3).
bench_reps <- function() {
  args <- commandArgs(TRUE)
  as.integer(sub("^--reps=", "", c(grep("^--reps=", args, value = TRUE), "--reps=3")[1]))
}

# Start `tools/SCRIPT start DIR` with the environment `env` (set for good: the jobs inherit
# it); a skip message and exit status 0 where it cannot start. Returns the function that
# stops it.
bench_cluster_start <- function(name, script, env) {
  dir <- tempfile(paste0("bench-", name, "-"))
  do.call(Sys.setenv, as.list(env))
  out <- suppressWarnings(system2("bash", c(shQuote(script), "start", shQuote(dir)), stdout = TRUE, stderr = TRUE))
  if (!is.null(attr(out, "status"))) {
    cat(sprintf("%s-setup: skipped (the test cluster did not start):\n%s\n", name, paste(out, collapse = "\n")))
    quit(status = 0L, save = "no")
  }
  structure(function() invisible(system2("bash", c(shQuote(script), "stop", shQuote(dir)), stdout = FALSE, stderr = FALSE)),
            dir = dir)
}

# Run `run_job(impl)` (a named numeric vector of seconds, or NULL when the job failed) for
# each of `impls` (our kind first, the recipe last), interleaved, `reps` times; print
# medians with min-max and the ratio of the first to the last.
bench_compare <- function(impls, run_job, reps, title) {
  runs <- list()
  for (rep in seq_len(reps)) for (impl in impls) {
    value <- run_job(impl)
    if (!is.null(value)) runs[[length(runs) + 1L]] <- data.frame(impl = impl, measure = names(value), value = unname(value))
  }
  if (length(runs) == 0L) return(invisible())
  runs <- do.call(rbind, runs)
  cat(sprintf("\n%s (%d reps)\n", title, reps))
  cat(sprintf("%-12s %s %s\n", "measure", paste(sprintf("%-28s", impls), collapse = " "), "kind/recipe"))
  for (m in unique(runs$measure)) {
    med <- function(impl) { x <- runs$value[runs$impl == impl & runs$measure == m]; if (length(x)) c(median(x), min(x), max(x)) else NA }
    cell <- function(x) if (anyNA(x)) "-" else sprintf("%.3f s (%.3f-%.3f)", x[1], x[2], x[3])
    meds <- lapply(impls, med)
    o <- meds[[1L]]; r <- meds[[length(meds)]]
    cat(sprintf("%-12s %s %s\n", m, paste(sprintf("%-28s", vapply(meds, cell, "")), collapse = " "),
                if (anyNA(r)) "-" else sprintf("%.2f", o[1] / r[1])))
  }
  invisible(runs)
}

# The R code of a job that times a cluster of 8 workers: `setup` (code that assigns `cl`, run
# after `prelude`), then isNodeAlive(), one parLapply() round and stopCluster(), as a named
# numeric vector saved to `result`.
bench_job_code <- function(prelude, setup, result) {
  paste(c("suppressPackageStartupMessages(library(parallelly))",
          "stopifnot(packageVersion(\"parallelly\") >= \"2.0.0\")",
          "t <- function(expr) { t0 <- Sys.time(); force(expr); as.numeric(difftime(Sys.time(), t0, units = \"secs\")) }",
          prelude,
          sprintf("setup <- t(%s)", setup),
          "stopifnot(length(cl) == 8L)",
          "alive <- t(ok <- isNodeAlive(cl))",
          "round <- t(parallel::parLapply(cl, 1:8, sqrt))",
          "stop <- t(parallel::stopCluster(cl))",
          sprintf("saveRDS(c(setup = setup, isNodeAlive = alive, parLapply = round, stopCluster = stop), %s)", deparse(result))),
        collapse = "\n")
}

# A job script (a temporary file) that runs R `code` with this R's Rscript.
bench_job_script <- function(code) {
  script <- tempfile(fileext = ".sh")
  writeLines(c("#!/bin/sh", paste(shQuote(c(file.path(R.home("bin"), "Rscript"), "-e", code)), collapse = " ")), script)
  script
}
