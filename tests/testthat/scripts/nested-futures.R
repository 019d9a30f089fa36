# Nested futures and futures created in awkward places, run by test-nested-futures.R with our
# package and with the reference. Prints "ok <case>" or "FAIL <case>: <message>" per case.
suppressPackageStartupMessages(library(future))
cat("parallelly", format(packageVersion("parallelly")), "from", dirname(find.package("parallelly")), "\n")
options(future.wait.timeout = 60)
here <- Sys.getpid()

check <- function(name, expr) {
  res <- tryCatch({ force(expr); "ok" }, error = function(e) paste("FAIL:", conditionMessage(e)))
  cat(if (identical(res, "ok")) "ok" else "FAIL", name, if (!identical(res, "ok")) sub("^FAIL: ", ": ", res), "\n")
  plan(sequential)
}
pid_of <- function(x) x$pid

# Two and three futures in flight inside an outer future, whose own plan is `outer`.
inner_two <- function() {
  b1 %<-% Sys.getpid()
  b2 %<-% Sys.getpid()
  b3 %<-% { Sys.sleep(0.1); Sys.getpid() }
  list(pid = Sys.getpid(), inner = c(b1, b2, b3))
}

check("sequential / multisession", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  a %<-% inner_two()
  stopifnot(a$pid == here, !here %in% a$inner, length(unique(a$inner)) == 2L)
})

check("multisession / sequential, several outer futures", {
  plan(list(tweak(multisession, workers = 2), sequential))
  fs <- lapply(1:3, function(i) future(inner_two()))
  vs <- value(fs)
  stopifnot(all(vapply(vs, function(v) v$pid != here && all(v$inner == v$pid), NA)))
})

check("multisession / multisession", {
  plan(list(tweak(multisession, workers = 2), tweak(multisession, workers = 2)))
  fs <- lapply(1:2, function(i) future(inner_two()))
  vs <- value(fs)
  stopifnot(all(vapply(vs, function(v) v$pid != here && !v$pid %in% v$inner && length(unique(v$inner)) == 2L, NA)))
})

check("cluster / multisession", {
  plan(list(tweak(cluster, workers = 2), tweak(multisession, workers = 2)))
  a %<-% inner_two()
  stopifnot(a$pid != here, !a$pid %in% a$inner)
})

check("sequential / cluster given a cluster object", {
  cl <- parallelly::makeClusterPSOCK(2)
  on.exit(parallel::stopCluster(cl))
  plan(list(sequential, tweak(cluster, workers = cl)))
  a %<-% inner_two()
  stopifnot(a$pid == here, all(a$inner %in% unlist(parallel::clusterEvalQ(cl, Sys.getpid()))))
})

check("three levels: sequential / multisession / sequential", {
  plan(list(sequential, tweak(multisession, workers = 2), sequential))
  a %<-% { x %<-% { y %<-% Sys.getpid(); c(Sys.getpid(), y) }; z %<-% Sys.getpid(); c(x, z) }
  stopifnot(a[1] == a[2], a[1] != here, a[3] != here)
})

check("three levels: multisession / sequential / multisession", {
  plan(list(tweak(multisession, workers = 2), sequential, tweak(multisession, workers = 2)))
  a %<-% { x %<-% { y1 %<-% Sys.getpid(); y2 %<-% Sys.getpid(); c(y1, y2) }; c(Sys.getpid(), x) }
  stopifnot(a[1] != here, !a[1] %in% a[2:3])
})

check("future_lapply inside a future", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  a %<-% future.apply::future_lapply(1:6, function(i) c(i, Sys.getpid()))
  stopifnot(identical(vapply(a, `[`, 0, 1), as.numeric(1:6)), !here %in% vapply(a, `[`, 0, 2))
})

check("furrr inside a future", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  a %<-% furrr::future_map_dbl(1:5, function(i) i * 2)
  stopifnot(identical(a, (1:5) * 2))
})

check("futures created inside lapply()", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  a %<-% { fs <- lapply(1:4, function(i) future(i + 1L)); unlist(value(fs)) }
  stopifnot(identical(a, 2:5))
})

check("futures created inside tryCatch(), withCallingHandlers() and local()", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  a %<-% {
    x <- tryCatch({ f <- future(1L); g <- future(2L); value(f) + value(g) }, error = function(e) NA)
    y <- withCallingHandlers({ f <- future(3L); g <- future(4L); value(f) + value(g) }, warning = function(w) NULL)
    z <- local({ f <- future(5L); g <- future(6L); value(f) + value(g) })
    c(x, y, z)
  }
  stopifnot(identical(a, c(3L, 7L, 11L)))
})

check("futures created by a trace()d function", {
  plan(list(sequential, tweak(multisession, workers = 2)))
  two <- function() { f <- future(Sys.getpid()); g <- future(Sys.getpid()); c(value(f), value(g)) }
  trace("two", quote(invisible(NULL)), print = FALSE, where = environment())
  a %<-% two()
  untrace("two", where = environment())
  stopifnot(length(a) == 2L, !here %in% a)
})

check("parallel's calls from a trace()d wrapper on a cluster of ours", {
  cl <- parallelly::makeClusterPSOCK(2)
  on.exit(parallel::stopCluster(cl))
  trace(parallel::clusterCall, quote(invisible(NULL)), print = FALSE)
  on.exit(untrace(parallel::clusterCall), add = TRUE)
  wrap <- function(cl) parallel::parLapply(cl, 1:6, function(x) x * 10)
  stopifnot(identical(unlist(wrap(cl)), (1:6) * 10),
            identical(unlist(parallel::clusterEvalQ(cl, 1L)), c(1L, 1L)))
})
cat("DONE\n")
