## Reading CPU limits from Linux control groups (v1 and v2).
##
## Every reader takes 'root', a prefix for all paths ("" = this machine),
## so tests can point it at a fake tree with proc/self/{mounts,cgroup}
## and sys/fs/cgroup/... made in a temporary directory.

## Default root; the internal option lets tests redirect availableCores()
cgroups_root <- function() {
  getOption("parallelly.cgroups.root", "")
}

## The cgroup mounts: data.frame(mountpoint, type, options)
getCGroupsMounts <- function(root = cgroups_root()) {
  file <- file.path(root, "proc", "self", "mounts")
  lines <- read_lines_or_empty(file)
  fields <- strsplit(lines, split = "[[:space:]]+")
  fields <- fields[lengths(fields) >= 4L]
  fields <- fields[vapply(fields, function(f) f[3] %in% c("cgroup", "cgroup2"), NA)]
  data.frame(
    mountpoint = vapply(fields, `[`, 2L, FUN.VALUE = ""),
    type = vapply(fields, `[`, 3L, FUN.VALUE = ""),
    options = vapply(fields, `[`, 4L, FUN.VALUE = ""),
    stringsAsFactors = FALSE
  )
}

## This process's cgroups: data.frame(id, controllers, path), from lines
## 'hierarchy-ID:controller-list:cgroup-path'
getCGroupsSelf <- function(root = cgroups_root()) {
  file <- file.path(root, "proc", "self", "cgroup")
  lines <- read_lines_or_empty(file)
  m <- regmatches(lines, regexec("^([0-9]+):([^:]*):(.*)$", lines))
  m <- m[lengths(m) == 4L]
  data.frame(
    id = as.integer(vapply(m, `[`, 2L, FUN.VALUE = "")),
    controllers = vapply(m, `[`, 3L, FUN.VALUE = ""),
    path = vapply(m, `[`, 4L, FUN.VALUE = ""),
    stringsAsFactors = FALSE
  )
}

## Directory of this process's cgroup for a v1 controller (e.g. "cpu"),
## or for cgroups v2 when controller is NULL.  NA if not mounted.
getCGroupsPath <- function(controller = NULL, root = cgroups_root()) {
  mounts <- getCGroupsMounts(root)
  self <- getCGroupsSelf(root)
  if (is.null(controller)) {
    mounts <- mounts[mounts$type == "cgroup2", , drop = FALSE]
    self <- self[self$id == 0L & self$controllers == "", , drop = FALSE]
  } else {
    has <- function(x) vapply(strsplit(x, ","), function(t) controller %in% t, NA)
    mounts <- mounts[mounts$type == "cgroup" & has(mounts$options), , drop = FALSE]
    self <- self[has(self$controllers), , drop = FALSE]
  }
  if (nrow(mounts) == 0L) return(NA_character_)
  mountpoint <- file.path(root, sub("^/", "", mounts$mountpoint[1]))
  if (nrow(self) == 0L) return(mountpoint)
  rel <- sub("^/+", "", self$path[1])
  path <- if (nzchar(rel)) file.path(mountpoint, rel) else mountpoint
  ## Inside a container the recorded path belongs to the host's view; the
  ## mount point itself is then our cgroup
  if (!dir.exists(path)) path <- mountpoint
  structure(path, mountpoint = mountpoint)
}

## Content of a cgroup file, looked up from our cgroup towards the mount
## point (limits may be set on a parent only); NA if not found
getCGroupsValue <- function(field, controller = NULL, root = cgroups_root()) {
  path <- getCGroupsPath(controller, root = root)
  if (is.na(path)) return(NA_character_)
  top <- attr(path, "mountpoint")
  if (is.null(top)) top <- path
  repeat {
    file <- file.path(path, field)
    if (file.exists(file)) {
      value <- read_lines_or_empty(file)
      return(if (length(value) == 0L) NA_character_ else trimws(value[1]))
    }
    if (normalizePath(path, mustWork = FALSE) ==
        normalizePath(top, mustWork = FALSE)) break
    if (dirname(path) == path) break
    path <- dirname(path)
  }
  NA_character_
}

## CPU ids allowed by cgroups v1 'cpuset.cpus', e.g. "0-3,6" -> 0:3, 6
getCGroups1CpuSet <- function(root = cgroups_root()) {
  value <- getCGroupsValue("cpuset.cpus", controller = "cpuset", root = root)
  if (is.na(value)) return(integer(0L))
  parse_cpu_list(value)
}

## CPUs allowed by cgroups v1 'cpu.cfs_quota_us' / 'cpu.cfs_period_us';
## NA when there is no quota (-1)
getCGroups1CpuQuota <- function(root = cgroups_root()) {
  quota <- getCGroupsValue("cpu.cfs_quota_us", controller = "cpu", root = root)
  period <- getCGroupsValue("cpu.cfs_period_us", controller = "cpu", root = root)
  quota <- suppressWarnings(as.numeric(quota))
  period <- suppressWarnings(as.numeric(period))
  if (is.na(quota) || is.na(period) || quota <= 0 || period <= 0) {
    return(NA_real_)
  }
  quota / period
}

## CPUs allowed by cgroups v2 'cpu.max' ("<quota> <period>" or "max ...")
getCGroups2CpuMax <- function(root = cgroups_root()) {
  value <- getCGroupsValue("cpu.max", controller = NULL, root = root)
  if (is.na(value)) return(NA_real_)
  parts <- strsplit(value, split = "[[:space:]]+")[[1]]
  if (length(parts) < 2L || parts[1] == "max") return(NA_real_)
  quota <- suppressWarnings(as.numeric(parts[1]))
  period <- suppressWarnings(as.numeric(parts[2]))
  if (is.na(quota) || is.na(period) || quota <= 0 || period <= 0) {
    return(NA_real_)
  }
  quota / period
}

## "0-3,6,8-9" -> c(0:3, 6, 8:9); invalid parts are dropped: not numbers, reversed
## ranges, and ids beyond any real machine (Linux allows at most 8192 CPUs), which would
## otherwise overflow as.integer() or make a huge sequence.
parse_cpu_list <- function(value) {
  max_cpu_id <- 65535
  parts <- trimws(strsplit(value, split = ",", fixed = TRUE)[[1]])
  parts <- parts[grepl("^[0-9]{1,9}(-[0-9]{1,9})?$", parts)]
  ids <- lapply(parts, function(part) {
    range <- as.numeric(strsplit(part, split = "-", fixed = TRUE)[[1]])
    if (any(range > max_cpu_id)) return(integer(0L))
    if (length(range) == 1L) return(as.integer(range))
    if (range[2] < range[1]) return(integer(0L))
    seq.int(as.integer(range[1]), as.integer(range[2]))
  })
  unique(as.integer(unlist(ids)))
}

read_lines_or_empty <- function(file) {
  if (!file.exists(file)) return(character(0L))
  tryCatch(readLines(file, warn = FALSE), error = function(ex) character(0L))
}
