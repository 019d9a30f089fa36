# Run tests/testthat against the installed package and print testthat's totals as
# "N passed, N failed, N skipped"; exit status 1 on any failure or error.
library(testthat)
options(warn = 1)
# Every failure is reported (testthat >= 3.2 stops a run after 10 by default).
options(testthat.progress.max_fails = Inf)
results <- testthat::test_dir("tests/testthat", package = "parallelly", load_package = "installed",
                              reporter = ProgressReporter$new(show_praise = FALSE),
                              stop_on_failure = FALSE)
df <- as.data.frame(results)
failed <- sum(df$failed) + sum(df$error)
passed <- sum(df$passed)
skipped <- sum(df$skipped)
cat(sprintf("%d passed, %d failed, %d skipped\n", passed, failed, skipped))
quit(status = if (failed > 0L) 1L else 0L, save = "no")
