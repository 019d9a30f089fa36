# The benchmark suite runs (quick smoke mode: one repetition of small cases); timings are
# not asserted here, only that every measure produces a number for our package.

test_that("bench/run.R --quick measures our package", {
  script <- testthat::test_path("..", "..", "bench", "run.R")
  skip_if(!file.exists(script), "bench/ is not in this copy of the package")
  out <- system2(file.path(R.home("bin"), "Rscript"), c(shQuote(script), "--quick"), stdout = TRUE, stderr = TRUE)
  expect_null(attr(out, "status"))
  for (measure in c("setup_local", "alive_local", "kill_local", "clone_local", "roundtrip", "parlapply", "memory")) {
    line <- grep(sprintf("^[0-9]+ +%s ", measure), out, value = TRUE)
    expect_true(length(line) >= 1L, info = measure)
    expect_false(any(grepl(sprintf("%s +[0-9]+ +- ", measure), line)), info = measure)
  }
})
