# Network partitions of SSH test hosts (iptables rules on the test hosts' loopback
# addresses and ports only, always removed again), for the fault tests.

skip_if_no_iptables <- function() {
  if (Sys.which("iptables") == "") skip_unavailable("iptables (network partitions)", "not installed")
  st <- suppressWarnings(system2("iptables", c("-w", "-L", "OUTPUT", "-n"), stdout = FALSE, stderr = FALSE))
  if (!identical(as.integer(st), 0L)) skip_unavailable("iptables (network partitions)", "it cannot be used here")
}

# The rules that cut `host` off (both directions of its sshd's port), as iptables arguments.
partition_rules <- function(host, hosts) {
  row <- hosts$hosts[hosts$hosts$name == host, , drop = FALSE]
  stopifnot(nrow(row) == 1L)
  list(c("-d", row$address, "-p", "tcp", "--dport", row$port, "-j", "DROP"),
       c("-s", row$address, "-p", "tcp", "--sport", row$port, "-j", "DROP"))
}

# Cut the hosts off until heal() (or the end of the calling test, whichever comes first).
local_partition <- function(names, hosts, envir = parent.frame()) {
  rules <- unlist(lapply(names, partition_rules, hosts = hosts), recursive = FALSE)
  active <- new.env(parent = emptyenv())
  active$on <- TRUE
  heal <- function() {
    if (!active$on) return(invisible())
    active$on <- FALSE
    for (r in rules) {
      # Delete every copy of the rule (a failed test must not leave one behind).
      while (identical(suppressWarnings(system2("iptables", c("-w", "-D", "OUTPUT", r), stdout = FALSE, stderr = FALSE)), 0L)) {}
    }
    invisible()
  }
  withr::defer(heal(), envir = envir)
  for (r in rules) {
    st <- system2("iptables", c("-w", "-I", "OUTPUT", r), stdout = FALSE, stderr = FALSE)
    if (st != 0L) stop("cannot add iptables rule: ", paste(r, collapse = " "))
  }
  heal
}

elapsed <- function(expr) {
  t0 <- Sys.time()
  force(expr)
  as.double(Sys.time() - t0, units = "secs")
}
