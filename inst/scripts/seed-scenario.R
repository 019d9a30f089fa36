# The seed scenario: check, kill (while busy), clone, grow and stop a cluster of two workers,
# local ones, or those named in PARALLELLY_DEMO_WORKERS (comma-separated; tools/run-demo.sh
# sets "localhost,testhost1" when it can start an SSH test host).
# Run with: Rscript inst/scripts/seed-scenario.R
library(parallelly)
options(useFancyQuotes = FALSE)
step <- function(title) cat(sprintf("\n## %s\n", title))

workers <- strsplit(Sys.getenv("PARALLELLY_DEMO_WORKERS", "localhost,localhost"), ",")[[1]]
step(sprintf("Two workers: %s", paste(workers, collapse = ", ")))
cl <- makeClusterPSOCK(workers)
print(cl)
print(cl[[1]])
print(isNodeAlive(cl))

step("Kill worker 2 while it is busy")
parallel:::sendCall(cl[[2]], fun = Sys.sleep, args = list(60))  # a busy worker
print(isNodeAlive(cl[[2]]))
print(killNode(cl[[2]]))
t0 <- Sys.time()
while (isTRUE(isNodeAlive(cl[[2]])) && Sys.time() - t0 < 10) Sys.sleep(0.05)
cat(sprintf("Worker 2 alive: %s (after %.2f s)\n", isNodeAlive(cl[[2]]), as.numeric(Sys.time() - t0, units = "secs")))

step("The cluster is broken now")
res <- tryCatch(parallel::parLapply(cl, 1:8, sqrt), error = function(e) e)
cat("parLapply() failed:", inherits(res, "error"), "\n")
print(cl)

step("Relaunch worker 2 with cloneNode()")
old_pid <- cl[[2]]$session_info$process$pid
cl[[2]] <- cloneNode(cl[[2]])
cat(sprintf("Worker 2 PID: %d -> %d\n", old_pid, cl[[2]]$session_info$process$pid))
print(isNodeAlive(cl))
y <- unlist(parallel::parLapply(cl, 1:8, sqrt))
cat("parLapply(cl, 1:8, sqrt) correct:", isTRUE(all.equal(y, sqrt(1:8))), "\n")

step("Grow the cluster with clones")
cl <- c(cl, cloneNode(cl[c(1, 1)]))
print(cl)
print(isNodeAlive(cl))

step("Kill all, then relaunch all")
print(killNode(cl))
t0 <- Sys.time()
while (any(isNodeAlive(cl), na.rm = TRUE) && Sys.time() - t0 < 10) Sys.sleep(0.05)
print(isNodeAlive(cl))
print(cl)
cl <- cloneNode(cl)
print(isNodeAlive(cl))
print(cl)

step("Stop the cluster")
local <- vapply(cl, isLocalhostNode, logical(1))
pids <- vapply(cl[local], function(node) node$session_info$process$pid, integer(1))
parallel::stopCluster(cl)
left <- pids[file.exists(file.path("/proc", pids))]
cat(sprintf("Local worker processes left after stopCluster(): %d\n", length(left)))
