# Cluster setup on local workers: strategies and the options that shape the worker.

test_that("both setup strategies give working RichSOCKclusters with session info", {
  for (strategy in c("parallel", "sequential")) {
    cl <- local_cluster(2, setup_strategy = strategy)
    expect_s3_class(cl, c("RichSOCKcluster", "SOCKcluster", "cluster"), exact = TRUE)
    for (node in cl) {
      expect_s3_class(node, c("RichSOCKnode", "SOCK0node"), exact = TRUE)
      expect_true(attr(node$host, "localhost"))
      expect_true(is.integer(node_pid(node)))
      expect_true(process_running(node_pid(node)))
      expect_identical(node$session_info$system$nodename, Sys.info()[["nodename"]])
      expect_true(dir.exists(node$session_info$tempdir))
      opts <- parallelly:::node_options(node)
      expect_s3_class(opts, "makeNodePSOCKOptions")
      expect_identical(opts$setup_strategy, strategy)
    }
    expect_identical(vapply(cl, `[[`, integer(1), "rank"), 1:2)
    # Two different worker processes, neither of them us.
    pids <- unlist(parallel::clusterEvalQ(cl, Sys.getpid()))
    expect_identical(pids, cluster_pids(cl))
    expect_false(Sys.getpid() %in% pids)
    parallel::stopCluster(cl)
  }
})

test_that("validate = FALSE skips session info but the node still knows its process", {
  cl <- local_cluster(1, validate = FALSE)
  expect_null(cl[[1]]$session_info)
  expect_true(isNodeAlive(cl[[1]]))
  pid <- parallel::clusterEvalQ(cl, Sys.getpid())[[1]]
  expect_identical(attr(cl[[1]], "process")$pid, pid)
  expect_output(print(cl), "R version and platform not queried", fixed = TRUE)
})

test_that("useXDR selects the node class and the wire format", {
  cl <- local_cluster(1, useXDR = TRUE)
  expect_s3_class(cl[[1]], c("RichSOCKnode", "SOCKnode"), exact = TRUE)
  expect_identical(parallel::clusterEvalQ(cl, 1:3)[[1]], 1:3)
  cl0 <- local_cluster(1, useXDR = FALSE)
  expect_s3_class(cl0[[1]], c("RichSOCKnode", "SOCK0node"), exact = TRUE)
  expect_identical(parallel::clusterEvalQ(cl0, 1:3)[[1]], 1:3)
})

test_that("rscript_startup runs code strings and expressions on the worker", {
  cl <- local_cluster(1, rscript_startup = list("x <- 21", quote(y <- 2L * x)))
  expect_identical(parallel::clusterEvalQ(cl, c(x, y))[[1]], c(21, 42))
})

test_that("rscript_envs sets, copies and unsets environment variables", {
  withr::local_envvar(PARALLELLY_TEST_COPY = "copied", PARALLELLY_TEST_UNSET = "present")
  cl <- local_cluster(1, rscript_envs = c(PARALLELLY_TEST_SET = "set", "PARALLELLY_TEST_COPY",
                                          PARALLELLY_TEST_UNSET = NA_character_))
  env <- parallel::clusterEvalQ(cl, Sys.getenv(c("PARALLELLY_TEST_SET", "PARALLELLY_TEST_COPY", "PARALLELLY_TEST_UNSET"), unset = "<unset>"))[[1]]
  expect_identical(unname(env), c("set", "copied", "<unset>"))
  expect_warning(
    cl2 <- local_cluster(1, rscript_envs = "PARALLELLY_TEST_NO_SUCH_VARIABLE"),
    "Did not pass down missing environment variables"
  )
  expect_identical(parallel::clusterEvalQ(cl2, Sys.getenv("PARALLELLY_TEST_NO_SUCH_VARIABLE", "<unset>"))[[1]], "<unset>")
})

test_that("rscript_envs takes names a shell cannot assign, as the reference does", {
  odd <- "NON-EXISTING-ENVVAR-1234567890"
  opts <- makeNodePSOCK(rscript_envs = setNames("abc", odd), port = 12345L, action = "options")
  expect_s3_class(opts, "makeNodePSOCKOptions")
  expect_match(opts$cmd, sprintf("^env %s=abc ", odd))
  cl <- local_cluster(1, rscript_envs = c(setNames("a b", odd), PARALLELLY_TEST_SET = "set"),
                      setup_strategy = "parallel")
  got <- parallel::clusterCall(cl, Sys.getenv, c(odd, "PARALLELLY_TEST_SET"))[[1]]
  expect_identical(unname(got), c("a b", "set"))
  # forked by a fork server started with it
  cl <- local_cluster(1, rscript_envs = setNames("forked", odd), setup_strategy = "fork")
  expect_identical(parallel::clusterCall(cl, Sys.getenv, odd)[[1]], "forked")
  # a remote worker's shell command sets it through env(1): run that command here, with a
  # program that writes the variable down instead of R (not a shell: dash drops such names)
  out <- withr::local_tempfile()
  perl <- sprintf('open(F, ">%s"); print F $ENV{"%s"}; close(F)', out, odd)
  opts <- makeNodePSOCK("remote.example.org", rscript_envs = setNames("x y", odd), port = 12345L,
                        rscript = I(c("perl", "-e", perl, "--")), action = "options", rshcmd = "ssh")
  cmd <- parallelly:::remote_worker_command(opts, 12345L, token = "t")
  expect_identical(system2("sh", c("-c", shQuote(cmd))), 0L)
  expect_identical(readLines(out, warn = FALSE), "x y")
  expect_error(makeNodePSOCK(rscript_envs = c("A=B" = "x"), port = 12345L, action = "options"),
               "rscript_envs", class = "parallellyArgumentError")
})

test_that("rscript_libs puts library paths first on the worker", {
  lib <- normalizePath(withr::local_tempdir(), winslash = "/")
  cl <- local_cluster(1, rscript_libs = c(lib, "*"))
  libs <- parallel::clusterEvalQ(cl, .libPaths())[[1]]
  expect_identical(libs[1], lib)
  expect_true(length(libs) > 1L)
})

test_that("default_packages decides what the worker attaches, '*' means the defaults", {
  cl <- local_cluster(1, default_packages = c("utils", "tools"))
  attached <- parallel::clusterEvalQ(cl, search())[[1]]
  expect_true("package:tools" %in% attached)
  expect_false("package:stats" %in% attached)
  cl2 <- local_cluster(1, default_packages = c("*", "tools"))
  attached <- parallel::clusterEvalQ(cl2, search())[[1]]
  expect_true(all(c("package:tools", paste0("package:", getOption("defaultPackages"))) %in% attached))
})

test_that("socketOptions reach the worker, and NULL skips them", {
  cl <- local_cluster(1)
  expect_identical(parallel::clusterEvalQ(cl, getOption("socketOptions"))[[1]], "no-delay")
  cl2 <- local_cluster(1, socketOptions = NULL)
  expect_null(parallel::clusterEvalQ(cl2, getOption("socketOptions"))[[1]])
})

test_that("a worker needs neither this package nor loads it", {
  empty <- withr::local_tempdir()
  cl <- local_cluster(1, rscript_envs = c(R_LIBS_USER = empty), rscript_libs = empty)
  expect_false(parallel::clusterEvalQ(cl, "parallelly" %in% loadedNamespaces())[[1]])
  expect_equal(unlist(parallel::parLapply(cl, 1:3, sqrt)), sqrt(1:3))
})

test_that("workers can be launched through R itself", {
  r <- file.path(R.home("bin"), "R")
  cl <- local_cluster(1, rscript = r, rscript_args = c("--no-echo", "--no-restore", "*", "--args"))
  expect_identical(parallel::clusterEvalQ(cl, 1 + 1)[[1]], 2)
  attached <- parallel::clusterEvalQ(cl, search())[[1]]
  expect_true("package:stats" %in% attached)
})

test_that("renice lowers the worker's priority", {
  cl <- local_cluster(1, renice = 5L)
  nice <- as.integer(strsplit(sub("^.*\\) ", "", readLines(file.path("/proc", node_pid(cl[[1]]), "stat"))), " ")[[1]][17])
  expect_identical(nice, 5L)
})

test_that("outfile sends what the worker prints to a file", {
  out <- withr::local_tempfile()
  cl <- local_cluster(1, outfile = out)
  parallel::clusterEvalQ(cl, cat("hello from the worker\n"))
  expect_true(wait_for(function() any(grepl("hello from the worker", readLines(out, warn = FALSE)))))
})

test_that("port = 'random' and R_PARALLELLY_RANDOM_PORTS pick the listening port", {
  withr::local_envvar(R_PARALLELLY_RANDOM_PORTS = "40100:40150")
  cl <- local_cluster(1, port = "random")
  port <- parallelly:::node_options(cl[[1]])$port
  expect_true(port >= 40100L && port <= 40150L)
})

test_that("dryrun prints the launch command and starts nothing", {
  before <- parallelly:::backend_child_count()
  out <- capture.output(cl <- makeClusterPSOCK(2, dryrun = TRUE))
  expect_identical(parallelly:::backend_child_count(), before)
  expect_true(any(grepl("Manually, start worker #1 on local machine 'localhost' with:", out, fixed = TRUE)))
  expect_true(any(grepl("Manually, start worker #2", out, fixed = TRUE)))
  cmd <- grep("Rscript", out, value = TRUE)[1]
  expect_match(cmd, "--default-packages=datasets,utils,grDevices,graphics,stats,methods", fixed = TRUE)
  expect_match(cmd, "readRDS(", fixed = TRUE)
  # R CMD check lowers the default timeouts (option parallelly.makeNodePSOCK.timeout).
  expect_match(cmd, "MASTER=localhost PORT=[0-9]+ OUT=/dev/null TIMEOUT=[0-9]+ XDR=FALSE SETUPTIMEOUT=[0-9]+ SETUPSTRATEGY=sequential")
  expect_length(cl, 2L)
  expect_true(all(vapply(cl, is.null, logical(1))))
  expect_silent(makeClusterPSOCK(1, dryrun = TRUE, quiet = TRUE))
})

test_that("makeNodePSOCK(action = 'options') describes a remote worker's launch", {
  opts <- makeNodePSOCK("n1.remote.org", port = 11562L, user = "alice", action = "options")
  expect_s3_class(opts, "makeNodePSOCKOptions")
  expect_false(attr(opts$worker, "localhost"))
  expect_true(opts$revtunnel)
  # The built-in SSH client starts a host's workers together (forked from one R process
  # there when the host can), through a reverse tunnel whose server end listens on the
  # remote host's IPv4 loopback address.
  expect_identical(opts$setup_strategy, if (identical(Sys.info()[["sysname"]], "Linux")) "fork" else "parallel")
  # Start-up code runs in each worker's own R, so it gets no fork server by default...
  startup <- makeNodePSOCK("n1.remote.org", port = 11562L, rscript_startup = "x <- 1", action = "options")
  expect_identical(startup$setup_strategy, "parallel")
  e_code <- makeNodePSOCK("n1.remote.org", port = 11562L, rscript_args = c("-e", "x <- 1"), action = "options")
  expect_identical(e_code$setup_strategy, "parallel")
  flags <- makeNodePSOCK("n1.remote.org", port = 11562L, rscript_args = "--no-environ", action = "options")
  expect_identical(flags$setup_strategy, opts$setup_strategy)
  # ...unless asked for.
  forked <- makeNodePSOCK("n1.remote.org", port = 11562L, rscript_startup = "x <- 1", setup_strategy = "fork",
                          action = "options")
  expect_identical(forked$setup_strategy, "fork")
  expect_identical(opts$master, "127.0.0.1")
  expect_identical(opts$ssh$user, "alice")
  expect_match(opts$rsh_call, "-R 11562:127.0.0.1:11562 -l alice n1.remote.org", fixed = TRUE)
  expect_match(opts$cmd, "^'Rscript' ")
  # An external client keeps the reference's sequential setup.
  ext <- makeNodePSOCK("n1.remote.org", port = 11562L, rshcmd = "ssh", action = "options")
  expect_identical(ext$setup_strategy, "sequential")
  expect_null(ext$ssh)
})

test_that("autoStop registers the cluster with the garbage collector", {
  cl <- local_cluster(1, autoStop = TRUE)
  expect_true(is.environment(attr(cl, "gcMe")))
  expect_output(print(cl), "registered to be automatically stopped by the garbage collector", fixed = TRUE)
  # Once nothing refers to the cluster, garbage collection stops its workers.
  pid <- local({
    cl <- makeClusterPSOCK(1, autoStop = TRUE)
    node_pid(cl[[1]])
  })
  expect_true(process_running(pid))
  gc()
  expect_true(wait_for(function() { gc(); !process_running(pid) }, timeout = 10))
})

test_that("the workers of one host are resolved once and get their own ranks; a log file each stays each", {
  workers <- c("localhost", "n1.remote.org", "localhost", "n1.remote.org", "localhost")
  users <- rep(list(NULL), length(workers))
  got <- parallelly:::node_options_for(workers, makeNodePSOCK, 11562L, users, verbose = FALSE)
  expect_identical(vapply(got, function(o) o$rank, integer(1)), 1:5)
  expect_identical(vapply(got, function(o) o$arguments$rank, integer(1)), 1:5)
  # Identical to resolving each node on its own.
  for (i in seq_along(workers)) {
    own <- makeNodePSOCK(workers[i], port = 11562L, rank = i, action = "options")
    expect_identical(got[[i]][setdiff(names(own), "make_fcn")], own[setdiff(names(own), "make_fcn")])
  }
  logs <- parallelly:::node_options_for(rep("n1.remote.org", 3), makeNodePSOCK, 11562L, rep(list(NULL), 3),
                                        rshlogfile = TRUE, verbose = FALSE)
  expect_length(unique(vapply(logs, function(o) o$rshlogfile, "")), 3L)
  # Another user on the same host is resolved on its own.
  two <- parallelly:::node_options_for(rep("n1.remote.org", 2), makeNodePSOCK, 11562L, list("alice", "bob"), verbose = FALSE)
  expect_identical(vapply(two, function(o) o$user, ""), c("alice", "bob"))
})

test_that("the code fetched while the first workers start is the package's", {
  ns <- asNamespace("parallelly")
  for (name in parallelly:::post_connect_code) expect_true(is.function(get0(name, envir = ns, inherits = FALSE)), info = name)
})
