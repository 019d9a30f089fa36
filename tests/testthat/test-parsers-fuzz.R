# Property tests for the parsers of system files we own on the R side (cgroups: mounts,
# /proc/self/cgroup, cpuset lists, CPU quotas): random and mangled input never makes them
# fail, warn about anything but coercion, or return values of the wrong type or range.
# (The Rust parsers -- ssh config, /proc/net/tcp, remote /proc output -- have theirs in
# cargo test.) The seed is fixed so that a failure can be replayed.

random_text <- function(n, alphabet) {
  vapply(seq_len(n), function(i) {
    len <- sample(0:40, 1L)
    paste(sample(alphabet, len, replace = TRUE), collapse = "")
  }, character(1))
}

test_that("parse_cpu_list() returns valid CPU ids for any input", {
  withr::local_seed(20261128)
  alphabet <- c(strsplit("0123456789--,,, x", "")[[1]], "99999999999", "2147483648", "\t")
  valid <- function(ids) is.integer(ids) && !anyNA(ids) && all(ids >= 0L & ids <= 65535L) && !anyDuplicated(ids)
  values <- random_text(2000, alphabet)
  bad <- Filter(function(value) !valid(parallelly:::parse_cpu_list(value)), values)
  expect_identical(bad, character(0))
})

test_that("parse_cpu_list() reads every well-formed list exactly", {
  withr::local_seed(42)
  wrong <- character(0)
  for (i in 1:500) {
    starts <- sample(0:200, sample(1:5, 1L))
    lens <- sample(0:4, length(starts), replace = TRUE)
    parts <- ifelse(lens == 0L, as.character(starts), paste0(starts, "-", starts + lens))
    expected <- unique(unlist(Map(function(s, l) s:(s + l), starts, lens)))
    value <- paste(parts, collapse = ",")
    if (!identical(parallelly:::parse_cpu_list(value), as.integer(expected))) wrong <- c(wrong, value)
  }
  expect_identical(wrong, character(0))
})

test_that("the cgroups readers survive garbage in every file they read", {
  withr::local_seed(7)
  failures <- character(0)
  alphabet <- c(letters[1:6], "cgroup", "cgroup2", "cpu", "cpuset", "cpuacct", ",", ":", "/", " ",
                "\t", "0", "1", "-", "max", "100000", "-1", "..", "99999999999")
  for (i in 1:150) {
    root <- tempfile("cgroups-fuzz-")
    dir.create(file.path(root, "proc", "self"), recursive = TRUE)
    # Half the cases mangle a realistic tree, the other half are pure noise.
    real <- i %% 2L == 0L
    mounts <- c(if (real) c("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0",
                            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0",
                            "cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0"),
                random_text(5, alphabet))
    cgroup <- c(if (real) c("0::/", "4:cpu,cpuacct:/user.slice", "3:cpuset:/"), random_text(5, alphabet))
    writeLines(mounts, file.path(root, "proc", "self", "mounts"))
    writeLines(cgroup, file.path(root, "proc", "self", "cgroup"))
    for (dir in c("sys/fs/cgroup", "sys/fs/cgroup/cpu,cpuacct/user.slice", "sys/fs/cgroup/cpuset")) {
      dir.create(file.path(root, dir), recursive = TRUE, showWarnings = FALSE)
    }
    files <- c("sys/fs/cgroup/cpu.max", "sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_quota_us",
               "sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_period_us", "sys/fs/cgroup/cpuset/cpuset.cpus")
    for (f in files) writeLines(random_text(sample(0:2, 1L), alphabet), file.path(root, f))

    res <- withCallingHandlers(list(
      mounts = parallelly:::getCGroupsMounts(root),
      self = parallelly:::getCGroupsSelf(root),
      cpuset = parallelly:::getCGroups1CpuSet(root),
      quota = parallelly:::getCGroups1CpuQuota(root),
      max = parallelly:::getCGroups2CpuMax(root)
    ), warning = function(w) {
      # Numbers beyond the integer range are coerced to NA with a warning: harmless.
      if (grepl("NAs introduced by coercion", conditionMessage(w))) invokeRestart("muffleWarning")
    })
    quota_ok <- function(q) is.numeric(q) && length(q) == 1L && (is.na(q) || q > 0)
    ok <- is.data.frame(res$mounts) && is.data.frame(res$self) && is.integer(res$cpuset) &&
      all(!is.na(res$cpuset) & res$cpuset >= 0L) && quota_ok(res$quota) && quota_ok(res$max)
    if (!ok) failures <- c(failures, paste(c(mounts, cgroup), collapse = " | "))
    if (i < 150L) unlink(root, recursive = TRUE)
  }
  expect_identical(failures, character(0))
  # And availableCores() on such a tree still answers a positive count.
  withr::defer(unlink(root, recursive = TRUE))
  withr::local_options(parallelly.cgroups.root = root)
  expect_gte(availableCores(methods = c("cgroups.cpuset", "cgroups.cpuquota", "cgroups2.cpu.max", "fallback")), 1L)
})
