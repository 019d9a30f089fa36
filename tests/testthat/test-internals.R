# R internals behind one door (R/internals.R): every check passes on this R, and every
# fallback works with real workers when the internal is turned off.

internal_names <- c("R_TempDir", "listen_socket", "work_loop", "direct_start", "wire_names", "task_position", "transport_methods", "is_child")

# Which worker loop serves the task that runs this (on the worker): parallel's, ours (made
# in the base environment), or none found. The innermost one: a forked worker runs on top of
# its fork server's frames, whose loop may be the other one.
serving_loop <- function() {
  base_loop <- get("workLoop", envir = asNamespace("parallel"))
  mark <- paste0("snow-", "try-error")  # not a literal: this function must not match itself
  for (i in rev(seq_len(sys.nframe() - 1L))) {
    f <- sys.function(i)
    if (identical(f, base_loop)) return("parallel")
    if (identical(environment(f), baseenv()) && any(grepl(mark, deparse(body(f)), fixed = TRUE))) return("lean")
  }
  "none"
}
environment(serving_loop) <- baseenv()

# On the worker, while the master still waits for its workers: the addresses the master's
# port (the worker's PORT= argument) listens on, from /proc/net/tcp (same machine).
master_listeners_code <- paste0(
  "local({port <- as.integer(sub('^PORT=', '', grep('^PORT=', commandArgs(TRUE), value = TRUE)));",
  "lines <- readLines('/proc/net/tcp');",
  "re <- sprintf('^ *[0-9]+: ([0-9A-F]{8}):%04X [0-9A-F]{8}:[0-9A-F]{4} 0A .*$', port);",
  "hex <- sub(re, '\\\\1', grep(re, lines, value = TRUE));",
  "assign('master_listeners', vapply(hex, function(h) paste(rev(strtoi(substring(h, c(1,3,5,7), c(2,4,6,8)), 16L)), collapse = '.'), ''), envir = globalenv())})"
)

test_that("every R internal is listed once and passes its check on this R", {
  r <- parallelly:::r_internals()
  expect_identical(r$name, internal_names)
  expect_true(all(r$ok), info = paste(r$name, r$why, collapse = "; "))
  expect_true(all(r$used))
  expect_false(any(r$disabled))
  for (col in c("what", "use", "fallback")) expect_true(all(nzchar(r[[col]])))
  # The checks really run again (not cached) and stay cheap.
  t <- system.time(ok <- parallelly:::check_r_internals())[["elapsed"]]
  expect_identical(unname(ok), rep(TRUE, length(internal_names)))
  expect_lt(t, 2)
})

test_that("the checks see a loop that answers differently, and a missing symbol's path", {
  answers <- parallelly:::wire_answers()
  expect_length(answers$base, 5L)
  input <- local({
    out <- rawConnection(raw(0), open = "wb")
    on.exit(close(out))
    node <- structure(list(con = out), class = "SOCKnode")
    parallel:::sendCall(node, "eval", list(quote(1L + 1L)), tag = 2L)
    parallel:::postNode(node, "DONE")
    rawConnectionValue(out)
  })
  # A loop that answers with the wrong tag is told apart from parallel's.
  wrong <- function(master) {
    con <- master$con
    msg <- unserialize(con)
    serialize(list(type = "VALUE", value = 2L, success = TRUE, time = proc.time(), tag = 99L), con)
    unserialize(con)
    close(con)
  }
  got <- parallelly:::run_loop_on(wrong, input, 1L)[[1L]]
  base <- parallelly:::run_loop_on(parallel:::workLoop, input, 1L)[[1L]]
  expect_identical(base$tag, 2L)
  expect_false(identical(got$tag, base$tag))
  # R_TempDir is read from the running R: it is this session's tempdir().
  expect_identical(normalizePath(parallelly:::backend_r_temp_dir()), normalizePath(tempdir()))
})

test_that("option parallelly.internals.disable is checked and reported", {
  withr::local_options(parallelly.internals.disable = "no-such-internal")
  expect_error(parallelly:::r_internals(), "parallelly.internals.disable.*no-such-internal", class = "parallellyOptionError")
  options(parallelly.internals.disable = c("wire_names", "is_child"))
  r <- parallelly:::r_internals()
  expect_identical(r$name[!r$used], c("wire_names", "is_child"))
  options(parallelly.internals.disable = "all")
  # Methods registered at load stay until the next load (see the last test).
  r <- parallelly:::r_internals()
  expect_identical(r$name[r$used], "transport_methods")
  expect_true(all(r$disabled))
})

test_that("R_TempDir turned off: setup_strategy = \"fork\" launches the workers the usual way", {
  withr::local_options(parallelly.internals.disable = "R_TempDir")
  cl <- local_cluster(2, setup_strategy = "fork")
  expect_identical(vapply(cl, function(node) attr(node, "process")$kind, ""), c("local", "local"))
  tmp <- unlist(parallel::clusterEvalQ(cl, tempdir()))
  expect_length(unique(c(tmp, tempdir())), 3L)
  expect_identical(unlist(parallel::parLapply(cl, 1:4, function(x) x^2)), c(1, 4, 9, 16))
  # On again: the workers are forked.
  options(parallelly.internals.disable = NULL)
  cl2 <- local_cluster(2, setup_strategy = "fork")
  expect_identical(vapply(cl2, function(node) attr(node, "process")$kind, ""), c("fork", "fork"))
})

test_that("listen_socket: the master's port listens on 127.0.0.1, or on all interfaces when turned off", {
  cl <- local_cluster(1, setup_strategy = "parallel", rscript_startup = master_listeners_code)
  expect_identical(unname(parallel::clusterEvalQ(cl, master_listeners)[[1L]]), "127.0.0.1")
  withr::local_options(parallelly.internals.disable = "listen_socket")
  # Turned off by the user: no warning.
  warned <- character()
  cl2 <- withCallingHandlers(
    local_cluster(1, setup_strategy = "parallel", rscript_startup = master_listeners_code),
    warning = function(w) {
      warned <<- c(warned, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_identical(warned, character())
  expect_identical(unname(parallel::clusterEvalQ(cl2, master_listeners)[[1L]]), "0.0.0.0")
  expect_identical(parallel::clusterEvalQ(cl2, 1 + 1), list(2))
})

test_that("work_loop turned off: local and forked workers serve with parallel's loop", {
  for (strategy in c("parallel", "fork")) {
    cl <- local_cluster(2, setup_strategy = strategy)
    expect_identical(parallel::clusterCall(cl, serving_loop), list("lean", "lean"), info = strategy)
  }
  withr::local_options(parallelly.internals.disable = "work_loop")
  for (strategy in c("parallel", "fork")) {
    cl <- local_cluster(2, setup_strategy = strategy)
    expect_identical(parallel::clusterCall(cl, serving_loop), list("parallel", "parallel"), info = strategy)
    expect_false(grepl("workLoop", parallelly:::node_options(cl[[1]])$cmd, fixed = TRUE))
    expect_identical(unlist(parallel::parLapplyLB(cl, 1:4, function(x) -x, chunk.size = 1)), -(1:4))
    expect_error(parallel::clusterEvalQ(cl, stop("bad task")), "bad task")
  }
})

test_that("wire_names turned off: eval and lapply travel as functions, and the tasks still run", {
  cl <- local_cluster(1)
  state <- parallelly:::node_state(cl[[1]])
  msg <- list(type = "EXEC", data = list(fun = eval, args = list(quote(1)), return = TRUE, tag = NULL), tag = NULL)
  expect_identical(parallelly:::number_task(state, msg)$data$fun, "eval")
  withr::local_options(parallelly.internals.disable = "wire_names")
  expect_identical(parallelly:::number_task(state, msg)$data$fun, eval)
  msg$data$fun <- lapply
  expect_identical(parallelly:::number_task(state, msg)$data$fun, lapply)
  # Real tasks of both kinds on the same worker (its results are read in order).
  parallel:::sendCall(cl[[1]], eval, list(quote(1 + 1)))
  expect_identical(parallel:::recvResult(cl[[1]]), 2)
  expect_identical(parallel::clusterEvalQ(cl, 40 + 2), list(42))
  expect_identical(unlist(parallel::parLapply(cl, 1:3, function(x) x * 10)), c(10, 20, 30))
})

test_that("task_position turned off: a crashed task's error says (unknown)", {
  # clusterApply() sends no tags: the position comes from parallel's frame.
  cl <- local_cluster(2, retries = 1)
  crash <- function(i) {
    if (i == 2L) tools::pskill(Sys.getpid(), tools::SIGKILL)
    i
  }
  err <- tryCatch(parallel::clusterApply(cl, 1:2, crash), error = function(e) e)
  expect_match(conditionMessage(err), "^Task #2 crashed its worker 2 times")
  withr::local_options(parallelly.internals.disable = "task_position")
  err <- tryCatch(parallel::clusterApply(cl, 1:2, crash), error = function(e) e)
  expect_match(conditionMessage(err), "^Task \\(unknown\\) crashed its worker 2 times")
  expect_identical(unlist(parallel::clusterApply(cl, 1:2, function(i) i)), 1:2)
})

test_that("is_child turned off: isForkedChild() still tells forked children from this process", {
  skip_if_not(supportsMulticore())
  withr::local_options(parallelly.internals.disable = "is_child")
  expect_false(isForkedChild())
  expect_identical(unlist(parallel::mclapply(1:2, function(i) isForkedChild(), mc.cores = 2L)), c(TRUE, TRUE))
})

test_that("R_PARALLELLY_INTERNALS_DISABLE=all at load: every fallback at once, and a cluster works", {
  script <- tempfile(fileext = ".R")
  withr::defer(unlink(script))
  writeLines(c(
    "library(parallelly)",
    "r <- parallelly:::r_internals()",
    "stopifnot(all(r$ok), !any(r$used), identical(getOption('parallelly.internals.disable'), 'all'))",
    "cl <- makeClusterPSOCK(2)",
    "kinds <- vapply(cl, function(node) attr(node, 'process')$kind, '')",
    "res <- parallel::parLapply(cl, 1:4, function(x) x + 1)",
    "parallel::stopCluster(cl)",
    "cat(kinds, unlist(res), sep = ',')"
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE, stderr = TRUE,
                 env = c("R_PARALLELLY_INTERNALS_DISABLE=all", paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_identical(tail(out, 1L), "local,local,2,3,4,5")
})

test_that("transport_methods: registered at load after their check; without them parallel's own serve our nodes", {
  ns <- asNamespace("parallel")
  expect_identical(utils::getS3method("sendData", "RichSOCKnode", envir = ns), parallelly:::sendData.RichSOCKnode)
  expect_identical(utils::getS3method("recvOneData", "RichSOCKcluster", envir = ns), parallelly:::recvOneData.RichSOCKcluster)
  script <- tempfile(fileext = ".R")
  withr::defer(unlink(script))
  writeLines(c(
    "library(parallelly)",
    "ns <- asNamespace('parallel')",
    "r <- parallelly:::r_internals()",
    "stopifnot(r$ok[r$name == 'transport_methods'], !r$used[r$name == 'transport_methods'])",
    "stopifnot(is.null(utils::getS3method('sendData', 'RichSOCKnode', optional = TRUE, envir = ns)))",
    "cl <- makeClusterPSOCK(2)",
    "a <- unlist(parallel::parLapply(cl, 1:4, function(x) x * 3))",
    "b <- unlist(parallel::parLapplyLB(cl, 1:4, function(x) -x, chunk.size = 1))",
    "parallel::stopCluster(cl)",
    "# makeClusterSequential()'s methods are its only transport: still registered.",
    "s <- makeClusterSequential()",
    "stopifnot(identical(parallel::parLapply(s, 1:2, function(x) x * 2L), list(2L, 4L)))",
    "cat(a, b, sep = ',')"
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE, stderr = TRUE,
                 env = c("R_PARALLELLY_INTERNALS_DISABLE=transport_methods", paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_identical(tail(out, 1L), "3,6,9,12,-1,-2,-3,-4")
})

test_that("a typo in R_PARALLELLY_INTERNALS_DISABLE: the package loads with a warning, a launch fails naming the option", {
  script <- tempfile(fileext = ".R")
  withr::defer(unlink(script))
  writeLines(c(
    "w <- NULL",
    "withCallingHandlers(library(parallelly), warning = function(x) { w <<- conditionMessage(x); invokeRestart('muffleWarning') })",
    "cat('warning:', w, '\\n')",
    "e <- tryCatch(makeClusterPSOCK(1), error = function(e) e)",
    "cat('error:', class(e)[1], conditionMessage(e), '\\n')"
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE, stderr = TRUE,
                 env = c("R_PARALLELLY_INTERNALS_DISABLE=work_loop,wrok_loop", paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_match(grep("^warning:", out, value = TRUE), "parallelly.internals.disable.*wrok_loop")
  expect_match(grep("^error:", out, value = TRUE), "^error: parallellyOptionError .*parallelly.internals.disable.*wrok_loop")
})

test_that("the Rust library calls R through its API only: nothing of tools:::nonAPI, and (R >= 4.5) all in tools:::funAPI()", {
  so <- system.file("libs", "parallelly.so", package = "parallelly")
  syms <- system2("readelf", c("--dyn-syms", "-W", so), stdout = TRUE)
  fields <- strsplit(trimws(grep(" UND ", syms, value = TRUE)), "[[:space:]]+")
  type <- vapply(fields, `[`, "", 4L)
  name <- sub("@.*$", "", vapply(fields, function(f) f[length(f)], ""))
  r_functions <- name[type == "FUNC" & grepl("^(R_|Rf_|[A-Z][A-Z0-9_]*$)", name)]
  expect_gt(length(r_functions), 50L)  # found: extendr calls R through many of them
  expect_identical(intersect(name, tools:::nonAPI), character())
  fun_api <- get0("funAPI", envir = asNamespace("tools"), mode = "function")
  if (is.function(fun_api)) expect_identical(setdiff(r_functions, fun_api()$name), character())
})

test_that("without loopback (a network namespace of its own) the socket checks fail for real; the load does not, and says so", {
  if (!identical(Sys.getenv("CI"), "true")) {
    ok <- suppressWarnings(system2("unshare", c("-n", "true"), stdout = FALSE, stderr = FALSE))
    skip_if_not(identical(ok, 0L), "unshare -n is refused here (needs root); CI runs it")
  }
  code <- paste(
    "t <- system.time(library(parallelly))[['elapsed']];",
    "r <- parallelly:::r_internals();",
    "cat(sprintf('%s=%s', r$name, r$ok), sprintf('load=%.2f', t), sep = '\\n')"
  )
  out <- system2("unshare", c("-n", file.path(R.home("bin"), "Rscript"), "--vanilla", "-e", shQuote(code)),
                 stdout = TRUE, stderr = TRUE,
                 env = c("R_PARALLELLY_DEBUG=TRUE", paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_true("listen_socket=FALSE" %in% out, info = paste(out, collapse = "\n"))
  # The worker loop's check needs no socket (it answers messages read from a file).
  expect_true(all(c("R_TempDir=TRUE", "wire_names=TRUE", "transport_methods=TRUE", "work_loop=TRUE") %in% out))
  expect_true(any(grepl("R internal 'listen_socket' failed its check on this R .*; instead, the port listens on all interfaces", out)))
  # What the refused connections said is in the reason, not in warnings of the load.
  expect_true(any(grepl("listen_socket' failed .*127.0.0.1:[0-9]+ cannot be opened", out)))
  expect_false(any(grepl("^Warning", out)), info = paste(out, collapse = "\n"))
  load <- as.numeric(sub("^load=", "", grep("^load=", out, value = TRUE)))
  expect_lt(load, 5)
})

test_that("on a remote host with our package: work_loop off, its forked workers serve with parallel's loop; R_TempDir off, plain workers", {
  hosts <- skip_if_no_ssh_hosts()
  skip_if_not_realistic_hosts(hosts)
  skip_unless_package_on_testhost3(hosts)
  local_ssh_env(hosts)
  kinds <- function(cl) vapply(cl, function(node) attr(node, "process")$kind, "")
  cl <- local_cluster(rep("testhost3", 2), setup_strategy = "fork")
  expect_identical(kinds(cl), c("fork", "fork"))
  expect_identical(parallel::clusterCall(cl, serving_loop), list("lean", "lean"))
  withr::local_options(parallelly.internals.disable = "work_loop")
  # The master's choice travels with each fork request (the server's own R does not know it).
  cl2 <- local_cluster(rep("testhost3", 2), setup_strategy = "fork")
  expect_identical(kinds(cl2), c("fork", "fork"))
  expect_identical(parallel::clusterCall(cl2, serving_loop), list("parallel", "parallel"))
  options(parallelly.internals.disable = "R_TempDir")
  cl3 <- local_cluster(rep("testhost3", 2), setup_strategy = "fork")
  expect_identical(kinds(cl3), c("ssh", "ssh"))
  expect_equal(unlist(parallel::parLapply(cl3, 1:4, sqrt)), sqrt(1:4))
})

test_that("a session runs a check only before the internal's first use (a worker that never uses one never pays)", {
  rscript <- file.path(R.home("bin"), "Rscript")
  code <- paste(
    'loadNamespace("parallelly")',
    'cat("load:", sort(names(parallelly:::.package$internals)), "\\n")',
    'cl <- parallelly::makeClusterPSOCK(1L, setup_strategy = "parallel")',
    'parallel::clusterEvalQ(cl, 1)',
    'cat("use:", sort(names(parallelly:::.package$internals)), "\\n")',
    'parallel::stopCluster(cl)', sep = "; ")
  out <- system2(rscript, c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE)
  expect_identical(grep("^load:", out, value = TRUE), "load: transport_methods ", info = paste(out, collapse = "\n"))
  used <- strsplit(sub("^use: ", "", grep("^use:", out, value = TRUE)), " ")[[1]]
  expect_true(all(c("listen_socket", "transport_methods", "wire_names") %in% used), info = paste(out, collapse = "\n"))
})
