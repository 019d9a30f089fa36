# Package state: every table this package keeps, created in one place (at load), with what
# removes entries from it. Tables are environments keyed by node key (node_key(): host, PID
# and start time of a worker) unless said otherwise.

init_package_state <- function() {
  table <- function() new.env(parent = emptyenv())
  .package$node_states <- table()    # task numbers per node; removed when the node stops or is killed
  .package$ended_nodes <- table()    # "stopped"/"killed": kept, so a second stopCluster() never
                                     # writes to a connection that reused a closed node's index
  .package$incarnations <- table()   # original node -> its relaunched worker; removed at stop
  .package$lineages <- table()       # self-healing budgets per original node; removed at stop
  .package$exit_causes <- table()    # remote causes of death (a shell tells once); removed at stop
  .package$known_deaths <- table()   # what summary() learnt of a dead remote worker, for print();
                                     # removed at stop
  .package$host_failures <- table()  # by host: deaths in a row; removed when a worker answers
  .package$ssh_users <- table()      # by host: the login user of the held connection
  .package$fork_servers <- table()   # by host and launch spec (R/forkServer.R)
  .package$fork_refusals <- table()  # by host and launch spec: until when; expire (R/forkServer.R)
  .package$retired_fork_servers <- table()
  .package$fork_server_names <- table()  # launch spec -> short server key; one per spec, kept
  .package$aborts <- 0L              # sends/receives left by an error or interrupt (R/nodeTraffic.R)
  .package$relaunches <- 0L          # in-place relaunches so far (R/selfHealing.R)
  .package$spin <- NULL              # the spin before a blocking read (R/spinWait.R)
  invisible()
}

# A node was stopped: nothing about it is needed any more, except that it ended.
forget_node <- function(node) {
  key <- node_key(node)
  if (is.null(key)) return(invisible())
  for (name in c("node_states", "incarnations", "lineages", "exit_causes", "known_deaths")) {
    table <- .package[[name]]
    if (exists(key, envir = table, inherits = FALSE)) rm(list = key, envir = table)
  }
  invisible()
}
