## Scheduler env vars read by availableWorkers() (helper-schedulers.R); unset for each test

local_clean_workers <- function(system = 8L, env = parent.frame()) {
  local_clean_scheduler_env(c("parallelly.availableWorkers.methods", "future.availableWorkers.methods",
                              "parallelly.availableWorkers.custom", "parallelly.availableCores.fallback",
                              "parallelly.availableCores.custom", "parallelly.availableCores.min",
                              "parallelly.localhost.hostname", "mc.cores",
                              "parallelly.slurm_expand_nodelist.manual",
                              "parallelly.availableWorkers.methods.excludes",
                              "parallelly.availableCores.methods.excludes"),
                            system = system, env = env)
}

local_hostfile <- function(lines, env = parent.frame()) {
  file <- tempfile()
  writeLines(lines, file)
  withr::defer(unlink(file), envir = env)
  file
}

test_that("availableWorkers() defaults to localhost workers", {
  w <- availableWorkers()
  expect_type(w, "character")
  expect_gte(length(w), 1L)

  local_clean_workers(system = 3L)
  methods <- c("mc.cores", "SGE", "system")
  expect_identical(availableWorkers(methods = methods), rep("localhost", 3L))
  withr::local_options(mc.cores = 2L)
  expect_identical(availableWorkers(methods = methods), rep("localhost", 2L))
  withr::local_options(parallelly.localhost.hostname = "127.0.0.1")
  expect_identical(availableWorkers(methods = "system"), rep("127.0.0.1", 3L))
  expect_identical(availableWorkers(methods = "SGE"), "127.0.0.1")
  expect_identical(availableWorkers(methods = "SGE", default = "myhost"), "myhost")
})

test_that("LSF: LSB_HOSTS lists one host per slot", {
  local_clean_workers()
  withr::local_envvar(LSB_HOSTS = "n1 n1 n2  n3")
  expect_identical(availableWorkers(methods = c("LSF", "system")),
                   c("n1", "n1", "n2", "n3"))
})

test_that("PBS: PBS_NODEFILE is parsed and sorted by hostname, as the reference does", {
  local_clean_workers()
  file <- local_hostfile(c("n1", "n2", "n1", "", "n3", "n2"))
  data <- parallelly:::read_pbs_nodefile(file)
  expect_s3_class(data, "data.frame")
  expect_identical(data$node, c("n1", "n1", "n2", "n2", "n3"))
  expect_identical(parallelly:::read_pbs_nodefile(file, sort = FALSE)$node,
                   c("n1", "n2", "n1", "n3", "n2"))
  withr::local_envvar(PBS_NODEFILE = file)
  expect_identical(availableWorkers(methods = c("PBS", "system")),
                   c("n1", "n1", "n2", "n2", "n3"))
  ## Sorted by name, not by first appearance (the reference 1.34 gives the same)
  withr::local_envvar(PBS_NODEFILE = local_hostfile(c("n3", "n1", "n6", "n3", "n5", "n3",
                                                      "n2", "n1")))
  expect_identical(availableWorkers(methods = "PBS"),
                   c("n1", "n1", "n2", "n3", "n3", "n3", "n5", "n6"))

  expect_error(parallelly:::read_pbs_nodefile(local_hostfile(character(0))), "empty")
  withr::local_envvar(PBS_NODEFILE = tempfile())
  expect_warning(w <- availableWorkers(methods = c("PBS", "system")), "PBS_NODEFILE")
  expect_identical(w, rep("localhost", 8L))
})

test_that("PJM: PJM_O_NODEINF is parsed, with warnings for odd files", {
  local_clean_workers()
  file <- local_hostfile(c("10.0.0.1", "10.0.0.2"))
  expect_identical(parallelly:::read_pjm_nodefile(file)$node, c("10.0.0.1", "10.0.0.2"))
  withr::local_envvar(PJM_O_NODEINF = file, PJM_VNODE_CORE = "2")
  expect_identical(availableWorkers(methods = c("PJM", "system")),
                   c("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"))

  dups <- local_hostfile(c("n1", "n2", "n1"))
  expect_warning(data <- parallelly:::read_pjm_nodefile(dups), "more than once")
  expect_identical(data$node, c("n1", "n1", "n2"))
  expect_warning(data <- parallelly:::read_pjm_nodefile(local_hostfile(character(0))),
                 "empty")
  expect_identical(nrow(data), 0L)
})

test_that("PJM: availableWorkers() keeps the order of the node file, as the reference does", {
  local_clean_workers()
  withr::local_envvar(PJM_O_NODEINF = local_hostfile(c("n3", "n1", "n6", "n5")),
                      PJM_VNODE_CORE = "2")
  expect_identical(availableWorkers(methods = "PJM"),
                   c("n3", "n3", "n1", "n1", "n6", "n6", "n5", "n5"))
  ## read_pjm_nodefile() itself sorts by name unless told not to
  expect_identical(parallelly:::read_pjm_nodefile(Sys.getenv("PJM_O_NODEINF"))$node,
                   c("n1", "n3", "n5", "n6"))
})

test_that("SGE: PE_HOSTFILE is parsed and expanded", {
  local_clean_workers()
  file <- local_hostfile(c("n1.cluster 2 all.q@n1.cluster UNDEFINED",
                           "n2.cluster 1 all.q@n2.cluster UNDEFINED",
                           "n3.cluster 3 all.q@n3.cluster <NULL>"))
  data <- parallelly:::read_pe_hostfile(file)
  expect_identical(names(data), c("node", "count", "via", "request"))
  expect_identical(data$node, c("n1.cluster", "n2.cluster", "n3.cluster"))
  expect_identical(data$count, c(2L, 1L, 3L))
  expect_identical(data$via[1], "all.q@n1.cluster")
  expected <- c("n1.cluster", "n1.cluster", "n2.cluster", rep("n3.cluster", 3L))
  expect_identical(parallelly:::sge_expand_node_count_pairs(data), expected)
  expect_identical(parallelly:::read_pe_hostfile(file, expand = TRUE), expected)

  withr::local_envvar(PE_HOSTFILE = file)
  expect_identical(availableWorkers(methods = c("SGE", "system")), expected)

  expect_error(parallelly:::read_pe_hostfile(local_hostfile("n1 two")), "slot count")
  expect_error(parallelly:::sge_expand_node_count_pairs(list(node = "a")), "data")
})

test_that("slurm_expand_nodelist() expands Slurm host lists", {
  expand <- function(x) parallelly:::slurm_expand_nodelist(x, manual = TRUE)
  cases <- list(
    "n1" = "n1",
    "n1,n2" = c("n1", "n2"),
    "n[1-3]" = c("n1", "n2", "n3"),
    "n[01-03]" = c("n01", "n02", "n03"),
    "n[8-11]" = c("n8", "n9", "n10", "n11"),
    "n[1,3-4,7]" = c("n1", "n3", "n4", "n7"),
    "n1,n[3-4],m[10-11]" = c("n1", "n3", "n4", "m10", "m11"),
    "n[1-2]-ib" = c("n1-ib", "n2-ib"),
    "rack[1-2]-n[1-2]" = c("rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"),
    "a[1-2]b[3],c" = c("a1b3", "a2b3", "c"),
    "node.example.org" = "node.example.org",
    "tux[2,1-2]" = c("tux2", "tux1", "tux2"),
    "n[001-002,010]" = c("n001", "n002", "n010")
  )
  for (spec in names(cases)) {
    expect_identical(expand(spec), cases[[spec]], info = spec)
  }
  expect_error(expand("n[1-3"), "Slurm node list")
  expect_error(expand("n[3-1]"), "Invalid range")
  expect_error(parallelly:::slurm_expand_nodelist(c("a", "b")), "nodelist")

  ## scontrol, if installed, agrees with the manual parser
  if (nzchar(Sys.which("scontrol"))) {
    expect_identical(parallelly:::slurm_expand_nodelist("n[1-3]"), c("n1", "n2", "n3"))
  }
})

test_that("SLURM_TASKS_PER_NODE is expanded", {
  expand <- parallelly:::slurm_expand_tasks_per_node
  expect_identical(expand("2"), 2L)
  expect_identical(expand("2(x3)"), c(2L, 2L, 2L))
  expect_identical(expand("2(x3),1"), c(2L, 2L, 2L, 1L))
  expect_identical(expand("1,4(x2),3"), c(1L, 4L, 4L, 3L))
  expect_identical(expand("x"), NA_integer_)
})

test_that("Slurm: workers from the node list and the job's CPUs per node", {
  local_clean_workers()
  withr::local_options(parallelly.slurm_expand_nodelist.manual = TRUE)
  withr::local_envvar(SLURM_JOB_NODELIST = "n[1-3]", SLURM_JOB_CPUS_PER_NODE = "2(x2),1")
  expect_identical(availableWorkers(methods = c("Slurm", "system")),
                   c("n1", "n1", "n2", "n2", "n3"))
  ## The job's CPUs count, not a step's tasks or the CPUs per task
  withr::local_envvar(SLURM_TASKS_PER_NODE = "1", SLURM_CPUS_PER_TASK = "3",
                      SLURM_NODELIST = "n1")
  expect_identical(availableWorkers(methods = "Slurm"), c("n1", "n1", "n2", "n2", "n3"))
  ## Without SLURM_JOB_CPUS_PER_NODE: tasks per node times CPUs per task
  withr::local_envvar(SLURM_JOB_CPUS_PER_NODE = NA, SLURM_TASKS_PER_NODE = "2,1(x2)",
                      SLURM_CPUS_PER_TASK = "2")
  expect_identical(availableWorkers(methods = "Slurm"), rep(c("n1", "n2", "n3"), times = c(4, 2, 2)))
  withr::local_envvar(SLURM_CPUS_PER_TASK = NA)
  expect_identical(availableWorkers(methods = "Slurm"), c("n1", "n1", "n2", "n3"))
  withr::local_envvar(SLURM_TASKS_PER_NODE = NA)
  expect_identical(availableWorkers(methods = "Slurm"), c("n1", "n2", "n3"))
  withr::local_envvar(SLURM_JOB_NODELIST = NA, SLURM_NODELIST = "m[1-2]")
  expect_identical(availableWorkers(methods = "Slurm"), c("m1", "m2"))
})

test_that("Slurm: counts that do not match the nodes give a warning and one worker per node", {
  local_clean_workers()
  withr::local_options(parallelly.slurm_expand_nodelist.manual = TRUE)
  withr::local_envvar(SLURM_JOB_NODELIST = "m[1-2]", SLURM_JOB_CPUS_PER_NODE = "1,2,3")
  expect_warning(w <- availableWorkers(methods = "Slurm"), "SLURM_JOB_CPUS_PER_NODE")
  expect_identical(w, c("m1", "m2"))
  ## A single count is not recycled over several nodes (a step's SLURM_TASKS_PER_NODE)
  withr::local_envvar(SLURM_JOB_CPUS_PER_NODE = NA, SLURM_TASKS_PER_NODE = "3")
  expect_warning(w <- availableWorkers(methods = "Slurm"), "SLURM_TASKS_PER_NODE")
  expect_identical(w, c("m1", "m2"))
  withr::local_envvar(SLURM_JOB_CPUS_PER_NODE = "x")
  expect_warning(w <- availableWorkers(methods = "Slurm"), "SLURM_JOB_CPUS_PER_NODE")
  expect_identical(w, c("m1", "m2"))
})

test_that("'which' picks among the methods' worker sets", {
  local_clean_workers(system = 4L)
  withr::local_envvar(LSB_HOSTS = "n1 n2")
  withr::local_options(mc.cores = 3L)
  methods <- c("LSF", "mc.cores", "system")
  expect_identical(availableWorkers(methods = methods), c("n1", "n2"))
  expect_identical(availableWorkers(methods = methods, which = "min"), c("n1", "n2"))
  ## localhost sets are harmonised to their minimum (3 from mc.cores)
  expect_identical(availableWorkers(methods = methods, which = "max"), rep("localhost", 3L))
  all <- availableWorkers(methods = c(methods, "PBS"), which = "all")
  expect_identical(names(all), c("LSF", "mc.cores", "system"))
  expect_identical(all$system, rep("localhost", 4L))
  all <- availableWorkers(methods = c(methods, "PBS"), which = "all", na.rm = FALSE)
  expect_identical(all$PBS, NA_character_)
  expect_error(availableWorkers(which = "median"))
})

test_that("custom functions give workers", {
  local_clean_workers()
  withr::local_options(parallelly.availableWorkers.custom = function() c("a", "b"))
  expect_identical(availableWorkers(methods = c("custom", "system")), c("a", "b"))
  withr::local_options(parallelly.availableWorkers.custom = function() 1:2)
  expect_error(availableWorkers(methods = "custom"), "custom")
})

test_that("constraint 'connections' limits the number of workers", {
  local_clean_workers(system = 100L)
  withr::local_options(parallelly.availableConnections = 20)
  free <- 20L - length(getAllConnections())
  w <- availableWorkers(methods = "system", constraints = "connections")
  expect_identical(w, rep("localhost", free))
})

test_that("PBS: counts in PBS_NP or PBS_NUM_NODES * PBS_NUM_PPN that differ from the node file warn", {
  local_clean_workers()
  file <- local_hostfile(c("n1", "n1", "n2", "n2"))
  withr::local_envvar(PBS_NODEFILE = file)
  expect_silent(w <- availableWorkers(methods = "PBS"))  # nothing to compare with
  expect_identical(w, c("n1", "n1", "n2", "n2"))
  withr::local_envvar(PBS_NP = "4", PBS_NUM_NODES = "2", PBS_NUM_PPN = "2")
  expect_silent(availableWorkers(methods = "PBS"))
  withr::local_envvar(PBS_NUM_PPN = "3")
  expect_warning(w <- availableWorkers(methods = "PBS"),
                 "'PBS_NUM_NODES' \\* 'PBS_NUM_PPN' = 2 \\* 3 = 6")
  expect_identical(w, c("n1", "n1", "n2", "n2"))
  withr::local_envvar(PBS_NUM_PPN = "2", PBS_NP = "5")
  expect_warning(availableWorkers(methods = "PBS"), "'PBS_NP' = 5")
})

test_that("option availableWorkers.methods.excludes drops methods, whatever 'methods' says", {
  local_clean_workers()
  withr::local_envvar(LSB_HOSTS = "n1 n1 n2")
  expect_identical(availableWorkers(methods = c("LSF", "system")), c("n1", "n1", "n2"))
  withr::local_options(parallelly.availableWorkers.methods.excludes = "LSF")
  expect_identical(availableWorkers(methods = c("LSF", "system")), rep("localhost", 8L))
  expect_false("LSF" %in% names(availableWorkers(which = "all")))
  withr::local_options(parallelly.availableWorkers.methods.excludes = "LSF, system")
  expect_identical(availableWorkers(methods = c("LSF", "system")), "localhost")
})
