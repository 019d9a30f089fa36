# Package state: every table this package keeps, created in one place (here), with what
# removes entries from it. Tables are environments keyed by node key (node_key(): host, PID
# and start time of a worker) unless said otherwise. Files use these tables; none makes its
# own (a kind's tables come from kind_table(), a node's entries from node_table()).
#
# What a node leaves goes when it stops (stopCluster(), or the stop after killNode()):
# forget_node() empties every table of `node_stop_tables` and every kind's leftovers go
# with its stop(). Only what a stopped node itself still needs -- its options and session
# information (cloneNode(), print(), summary() of a stopped node) and the mark that it ended
# (a second stopCluster() must not write to a reused connection) -- stays, in
# node_table()s, as long as R holds the node's connection (R/nodeOptions.R).

# Caches that are not about nodes, made with the namespace:
cgroups_cache <- new.env(parent = emptyenv())     # R/cgroups.R: parsed cgroup files per root
                                                  # (at most 8 roots; cleared beyond that)
connections_state <- new.env(parent = emptyenv()) # R/connections.R: the probed connection limit
localhost_cache <- new.env(parent = emptyenv())   # R/hosts.R: per name, whether it is this
                                                  # machine; cleared when the hosts file changes
multicore_state <- new.env(parent = emptyenv())   # R/supportsMulticore.R: the one-time warning

init_package_state <- function() {
  table <- function() new.env(parent = emptyenv())
  .package$node_states <- table()    # task numbers per node; removed when the node stops or is killed
  .package$incarnations <- table()   # original node -> its relaunched worker; removed at stop
  .package$lineages <- table()       # self-healing budgets per original node; removed at stop
  .package$exit_causes <- table()    # remote causes of death (a shell tells once); removed at stop
  .package$known_deaths <- table()   # what summary() learnt of a dead remote worker, for print();
                                     # removed at stop
  .package$host_failures <- table()  # by host: deaths in a row; removed when a worker answers
  .package$ssh_users <- table()      # by host: the login user of the held connection
  .package$ssh_holds <- table()      # by connection: how many setups hold it open (R/ssh.R)
  .package$node_tables <- table()    # by what (options, session_info, ended: "stopped"/
                                     # "killed"; tied): entries per node, removed when the
                                     # node's connection is collected (R/nodeOptions.R)
  .package$kind_tables <- table()    # by kind and what: a node kind's own tables (kind_table())
  .package$programs <- table()       # by program and PATH: its full path (find_program())
  .package$fork_servers <- table()   # by host and launch spec (R/forkServer.R)
  .package$fork_refusals <- table()  # by host and launch spec: until when; expire (R/forkServer.R)
  .package$retired_fork_servers <- table()
  .package$fork_server_names <- table()  # launch spec -> short server key; one per spec, kept
  .package$forked_logs <- table()    # in a fork server, by token: the logs its workers write on
                                     # a host the master reaches through it alone; removed as
                                     # it exits (R/forkServerProcess.R)
  .package$aborts <- 0L              # sends/receives left by an error or interrupt (R/nodeTraffic.R)
  .package$relaunches <- 0L          # in-place relaunches so far (R/selfHealing.R)
  .package$spin <- NULL              # the spin before a blocking read (R/spinWait.R)
  # R/internals.R: the checks of R internals, run at load
  .package$internals <- NULL         # by name: ok, why, seconds (r_internals())
  .package$internals_ok <- NULL      # by name: whether its check passed (internal_ok())
  .package$internals_known <- NULL   # the names of every listed internal
  .package$used_at_load <- list()    # by name: what was decided at load (method registrations)
  .package$wire_answers_cache <- NULL  # the loops' answers, during one run of the checks only
  .package$load_pid <- Sys.getpid()  # the process that loaded us (isForkedChild()'s fallback)
  .package$listen_socket_warned <- FALSE  # the one-time warning (R/launchNodePSOCK.R)
  .package$spin_stands_down <- TRUE  # ...gives up when every core is taken (tests of its budget turn it off)
  .package$spin_rest <- 0L           # ...and the reads that do not spin after it stood down
  invisible()
}

# A table of node kind `kind` (say, the R temporary directories that killed srun workers
# left, by host, removed when the cluster stops), made on first use.
kind_table <- function(kind, what) {
  key <- paste(kind, what, sep = ":")
  table <- .package$kind_tables[[key]]
  if (is.null(table)) table <- .package$kind_tables[[key]] <- new.env(parent = emptyenv())
  table
}

# The per-node tables whose entries go when the node stops.
node_stop_tables <- c("node_states", "incarnations", "lineages", "exit_causes", "known_deaths")

# How many entries every per-node table holds (the node tables by name): what a test of
# growth compares.
node_table_sizes <- function() {
  sizes <- vapply(node_stop_tables, function(name) length(ls(.package[[name]], all.names = TRUE)), integer(1))
  tables <- .package$node_tables
  c(sizes, vapply(ls(tables), function(name) length(ls(tables[[name]], all.names = TRUE)), integer(1)))
}

# A node was stopped: nothing about it is needed any more, except that it ended.
forget_node <- function(node) {
  key <- node_key(node)
  if (is.null(key)) return(invisible())
  for (name in node_stop_tables) {
    table <- .package[[name]]
    if (exists(key, envir = table, inherits = FALSE)) rm(list = key, envir = table)
  }
  invisible()
}
