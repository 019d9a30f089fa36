## A fake cgroups setup under a temporary root: proc/self/mounts,
## proc/self/cgroup and files below sys/fs/cgroup.  'files' maps paths
## relative to sys/fs/cgroup to their content.
make_cgroup_tree <- function(mounts, cgroup, files = list(), dirs = character(0),
                             env = parent.frame()) {
  root <- tempfile("cgroups-")
  withr::defer(unlink(root, recursive = TRUE), envir = env)
  dir.create(file.path(root, "proc", "self"), recursive = TRUE)
  writeLines(mounts, file.path(root, "proc", "self", "mounts"))
  writeLines(cgroup, file.path(root, "proc", "self", "cgroup"))
  for (d in dirs) dir.create(file.path(root, "sys/fs/cgroup", d), recursive = TRUE)
  for (name in names(files)) {
    file <- file.path(root, "sys/fs/cgroup", name)
    dir.create(dirname(file), recursive = TRUE, showWarnings = FALSE)
    writeLines(files[[name]], file)
  }
  root
}

v1_mounts <- c(
  "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
  "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,relatime,cpu,cpuacct 0 0",
  "cgroup /sys/fs/cgroup/cpuset cgroup rw,nosuid,relatime,cpuset 0 0",
  "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,relatime,memory 0 0"
)
v2_mounts <- c(
  "proc /proc proc rw,nosuid 0 0",
  "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0"
)

test_that("the cgroups getters return the right types on this machine", {
  mounts <- parallelly:::getCGroupsMounts()
  expect_s3_class(mounts, "data.frame")
  expect_named(mounts, c("mountpoint", "type", "options"))
  self <- parallelly:::getCGroupsSelf()
  expect_s3_class(self, "data.frame")

  cpuset <- parallelly:::getCGroups1CpuSet()
  expect_type(cpuset, "integer")
  expect_true(all(cpuset >= 0L))
  quota <- parallelly:::getCGroups1CpuQuota()
  expect_type(quota, "double")
  expect_length(quota, 1L)
  expect_true(is.na(quota) || quota > 0)
  cpumax <- parallelly:::getCGroups2CpuMax()
  expect_type(cpumax, "double")
  expect_length(cpumax, 1L)
  expect_true(is.na(cpumax) || cpumax > 0)
})

test_that("parse_cpu_list() expands CPU lists", {
  parse_cpu_list <- parallelly:::parse_cpu_list
  expect_identical(parse_cpu_list("0-3"), 0:3)
  expect_identical(parse_cpu_list("0-3,6,8-9"), c(0:3, 6L, 8:9))
  expect_identical(parse_cpu_list("5"), 5L)
  expect_identical(parse_cpu_list(""), integer(0))
})

test_that("cgroups v1 cpuset and CPU quota are read from our cgroup", {
  root <- make_cgroup_tree(v1_mounts,
    cgroup = c("4:memory:/docker/abc", "3:cpuset:/docker/abc",
               "2:cpu,cpuacct:/docker/abc", "0::/"),
    files = list("cpuset/docker/abc/cpuset.cpus" = "0-3,6",
                 "cpuset/cpuset.cpus" = "0-15",
                 "cpu,cpuacct/docker/abc/cpu.cfs_quota_us" = "150000",
                 "cpu,cpuacct/docker/abc/cpu.cfs_period_us" = "100000"))
  expect_identical(parallelly:::getCGroups1CpuSet(root = root), c(0:3, 6L))
  expect_identical(parallelly:::getCGroups1CpuQuota(root = root), 1.5)
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), NA_real_)
  path <- parallelly:::getCGroupsPath("cpuset", root = root)
  expect_identical(as.character(path), file.path(root, "sys/fs/cgroup/cpuset/docker/abc"))
})

test_that("cgroups v1: no quota (-1) gives NA; limits on a parent count", {
  root <- make_cgroup_tree(v1_mounts,
    cgroup = c("3:cpuset:/a/b", "2:cpu,cpuacct:/a/b"),
    dirs = c("cpuset/a/b", "cpu,cpuacct/a/b"),
    files = list("cpuset/a/cpuset.cpus" = "2-3",
                 "cpu,cpuacct/a/b/cpu.cfs_quota_us" = "-1",
                 "cpu,cpuacct/a/b/cpu.cfs_period_us" = "100000"))
  expect_identical(parallelly:::getCGroups1CpuSet(root = root), 2:3)
  expect_identical(parallelly:::getCGroups1CpuQuota(root = root), NA_real_)
})

test_that("cgroups v1 in a container: a path missing below the mount uses the mount", {
  root <- make_cgroup_tree(v1_mounts,
    cgroup = c("3:cpuset:/kubepods/pod1/xyz", "2:cpu,cpuacct:/kubepods/pod1/xyz"),
    files = list("cpuset/cpuset.cpus" = "1",
                 "cpu,cpuacct/cpu.cfs_quota_us" = "250000",
                 "cpu,cpuacct/cpu.cfs_period_us" = "100000"))
  expect_identical(parallelly:::getCGroups1CpuSet(root = root), 1L)
  expect_identical(parallelly:::getCGroups1CpuQuota(root = root), 2.5)
})

test_that("cgroups v2 cpu.max is read and 'max' means no limit", {
  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/user.slice/job",
    files = list("user.slice/job/cpu.max" = "200000 100000"))
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), 2)
  expect_identical(parallelly:::getCGroups1CpuSet(root = root), integer(0))
  expect_identical(parallelly:::getCGroups1CpuQuota(root = root), NA_real_)

  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/",
    files = list("cpu.max" = "max 100000"))
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), NA_real_)

  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/a/b", dirs = "a/b",
    files = list("a/cpu.max" = "50000 100000"))
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), 0.5)
})

test_that("cached cgroups lookups follow a changed limit, a move to another cgroup and new mounts", {
  root <- make_cgroup_tree(v1_mounts,
    cgroup = c("3:cpuset:/a", "2:cpu,cpuacct:/a"),
    files = list("cpuset/a/cpuset.cpus" = "0-3", "cpuset/b/cpuset.cpus" = "4",
                 "cpu,cpuacct/a/cpu.cfs_quota_us" = "200000",
                 "cpu,cpuacct/a/cpu.cfs_period_us" = "100000"))
  cpuset <- function() parallelly:::getCGroups1CpuSet(root = root)
  quota <- function() parallelly:::getCGroups1CpuQuota(root = root)
  expect_identical(cpuset(), 0:3)
  expect_identical(quota(), 2)
  # A quota or a cpuset changed in place is seen at once.
  writeLines("50000", file.path(root, "sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us"))
  writeLines("1-2", file.path(root, "sys/fs/cgroup/cpuset/a/cpuset.cpus"))
  expect_identical(quota(), 0.5)
  expect_identical(cpuset(), 1:2)
  # The process is moved to another cgroup.
  writeLines(c("3:cpuset:/b", "2:cpu,cpuacct:/b"), file.path(root, "proc/self/cgroup"))
  expect_identical(cpuset(), 4L)
  expect_identical(quota(), NA_real_)
  # Our cgroup's directory appears after the first lookup (it was missing: the mount was used).
  writeLines(c("3:cpuset:/c", "2:cpu,cpuacct:/b"), file.path(root, "proc/self/cgroup"))
  writeLines("0-7", file.path(root, "sys/fs/cgroup/cpuset/cpuset.cpus"))
  expect_identical(cpuset(), 0:7)
  dir.create(file.path(root, "sys/fs/cgroup/cpuset/c"))
  writeLines("6", file.path(root, "sys/fs/cgroup/cpuset/c/cpuset.cpus"))
  expect_identical(cpuset(), 6L)
  # The hierarchies are mounted anew as cgroups v2.
  writeLines(v2_mounts, file.path(root, "proc/self/mounts"))
  writeLines("0::/", file.path(root, "proc/self/cgroup"))
  writeLines("300000 100000", file.path(root, "sys/fs/cgroup/cpu.max"))
  expect_identical(cpuset(), integer(0))
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), 3)
})

test_that("no cgroups at all gives NA and empty sets", {
  root <- make_cgroup_tree("proc /proc proc rw 0 0", cgroup = character(0))
  expect_identical(parallelly:::getCGroups1CpuSet(root = root), integer(0))
  expect_identical(parallelly:::getCGroups1CpuQuota(root = root), NA_real_)
  expect_identical(parallelly:::getCGroups2CpuMax(root = root), NA_real_)
  expect_identical(parallelly:::getCGroupsPath(NULL, root = root), NA_character_)
})

test_that("availableCores() rounds cgroups quotas, with a minimum of one", {
  root <- make_cgroup_tree(v1_mounts, cgroup = c("3:cpuset:/", "2:cpu,cpuacct:/"),
    files = list("cpuset/cpuset.cpus" = "0-2",
                 "cpu,cpuacct/cpu.cfs_quota_us" = "150000",
                 "cpu,cpuacct/cpu.cfs_period_us" = "100000"))
  withr::local_options(parallelly.cgroups.root = root)
    expect_identical(availableCores(methods = "cgroups.cpuset"), c(cgroups.cpuset = 3L))
  expect_identical(availableCores(methods = "cgroups.cpuquota"), c(cgroups.cpuquota = 2L))

  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/", files = list("cpu.max" = "20000 100000"))
  withr::local_options(parallelly.cgroups.root = root)
  expect_identical(availableCores(methods = "cgroups2.cpu.max"), c(cgroups2.cpu.max = 1L))
})

test_that("cgroups v2 cpuset.cpus and cpuset.cpus.effective are read from our cgroup", {
  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/job/step",
    files = list("cpuset.cpus.effective" = "0-7",
                 "job/cpuset.cpus" = "2-5",
                 "job/cpuset.cpus.effective" = "2-5",
                 "job/step/cpuset.cpus" = "",
                 "job/step/cpuset.cpus.effective" = "2-3"))
  getset <- function(field) parallelly:::getCGroups2CpuSet(field, root = root)
  # the step asks for nothing of its own (empty: inherited) and is granted CPUs 2 and 3
  expect_identical(getset("cpuset.cpus"), integer(0))
  expect_identical(getset("cpuset.cpus.effective"), 2:3)
  withr::local_options(parallelly.cgroups.root = root)
  expect_identical(availableCores(methods = "cgroups2.cpuset.cpus.effective"),
                   c(cgroups2.cpuset.cpus.effective = 2L))
  all <- availableCores(methods = c("cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective"),
                        which = "all", na.rm = FALSE)
  expect_identical(all, c(cgroups2.cpuset.cpus = NA_integer_, cgroups2.cpuset.cpus.effective = 2L))
  expect_identical(availableWorkers(methods = "cgroups2.cpuset.cpus.effective"), rep("localhost", 2L))

  # no file in our cgroup: looked up towards the root
  root <- make_cgroup_tree(v2_mounts, cgroup = "0::/job/step", dirs = "job/step",
    files = list("job/cpuset.cpus" = "1,3,5-6"))
  expect_identical(parallelly:::getCGroups2CpuSet("cpuset.cpus", root = root), c(1L, 3L, 5L, 6L))
  withr::local_options(parallelly.cgroups.root = root)
  expect_identical(availableCores(methods = "cgroups2.cpuset.cpus"), c(cgroups2.cpuset.cpus = 4L))
  expect_error(parallelly:::getCGroups2CpuSet("cpu.max", root = root))
})

test_that("the cgroups v2 cpuset methods are among the defaults and agree with this machine", {
  defaults <- eval(formals(availableCores)$methods)
  expect_true(all(c("cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective") %in% defaults))
  expect_true(all(c("cgroups2.cpuset.cpus", "cgroups2.cpuset.cpus.effective") %in%
                    eval(formals(availableWorkers)$methods)))
  eff <- parallelly:::getCGroups2CpuSet("cpuset.cpus.effective")
  expect_type(eff, "integer")
  # where this machine's cgroups v2 has a cpuset, its effective CPUs are CPUs this process may use
  if (length(eff) > 0L) expect_lte(length(eff), parallel::detectCores())
})
