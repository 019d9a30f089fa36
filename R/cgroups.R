## Reading CPU limits from Linux control groups (v1 and v2).
##
## Every reader takes 'root', a prefix for all paths ("" = this machine),
## so tests can point it at a fake tree with proc/self/{mounts,cgroup}
## and sys/fs/cgroup/... made in a temporary directory.

## Default root; the internal option lets tests redirect availableCores()
cgroups_root <- function() {
  getOption("parallelly.cgroups.root", "")
}

## What a cgroups lookup costs is parsing, not reading: reading /proc/self/mounts and
## /proc/self/cgroup takes ~0.1 ms, parsing them and resolving a controller's directory
## ~1 ms. Both files are read on every lookup (a process may be moved to another cgroup,
## and mounts may change), but they are parsed, and the directories resolved, only when
## their text differs from the last time. The limit files themselves (cpuset.cpus,
## cpu.max, ...) are read afresh every time: a quota or a cpuset may change at any moment.
## (cgroups_cache, in R/state.R)

## The parsed state of the cgroup files under `root`: an environment with `mounts`,
## `self` and the resolved directories `paths` (one per controller), reused while both
## files read the same.
cgroups_state <- function(root = cgroups_root()) {
  mounts_lines <- read_lines_or_empty(file.path(root, "proc", "self", "mounts"))
  self_lines <- read_lines_or_empty(file.path(root, "proc", "self", "cgroup"))
  key <- paste0("root:", root)
  state <- cgroups_cache[[key]]
  if (!is.null(state) && identical(state$mounts_lines, mounts_lines) &&
      identical(state$self_lines, self_lines)) {
    return(state)
  }
  state <- new.env(parent = emptyenv())
  state$mounts_lines <- mounts_lines
  state$self_lines <- self_lines
  state$mounts <- parse_cgroups_mounts(mounts_lines)
  state$self <- parse_cgroups_self(self_lines)
  state$paths <- list()
  ## Tests point `root` at many fake trees: keep the cache small.
  if (length(cgroups_cache) >= 8L) rm(list = ls(cgroups_cache, all.names = TRUE), envir = cgroups_cache)
  assign(key, state, envir = cgroups_cache)
  state
}

## The cgroup mounts: data.frame(mountpoint, type, options)
getCGroupsMounts <- function(root = cgroups_root()) {
  cgroups_state(root)$mounts
}

parse_cgroups_mounts <- function(lines) {
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
  cgroups_state(root)$self
}

parse_cgroups_self <- function(lines) {
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
  state <- cgroups_state(root)
  key <- if (is.null(controller)) "" else controller
  where <- state$paths[[key]]
  if (is.null(where)) {
    where <- cgroups_where(state$mounts, state$self, controller, root)
    state$paths[[key]] <- where
  }
  if (is.na(where$mountpoint)) return(NA_character_)
  ## Inside a container the recorded path belongs to the host's view; the
  ## mount point itself is then our cgroup. (Checked every time: cheap, and the
  ## directory may come or go.)
  path <- if (!is.na(where$path) && dir.exists(where$path)) where$path else where$mountpoint
  if (is.na(where$path)) return(path)
  structure(path, mountpoint = where$mountpoint)
}

## The mount point of a controller's hierarchy and our cgroup's directory below it
## (NA when we are in no cgroup of it): list(mountpoint, path).
cgroups_where <- function(mounts, self, controller, root) {
  if (is.null(controller)) {
    mounts <- mounts[mounts$type == "cgroup2", , drop = FALSE]
    self <- self[self$id == 0L & self$controllers == "", , drop = FALSE]
  } else {
    has <- function(x) vapply(strsplit(x, ","), function(t) controller %in% t, NA)
    mounts <- mounts[mounts$type == "cgroup" & has(mounts$options), , drop = FALSE]
    self <- self[has(self$controllers), , drop = FALSE]
  }
  if (nrow(mounts) == 0L) return(list(mountpoint = NA_character_, path = NA_character_))
  mountpoint <- file.path(root, sub("^/", "", mounts$mountpoint[1]))
  if (nrow(self) == 0L) return(list(mountpoint = mountpoint, path = NA_character_))
  rel <- sub("^/+", "", self$path[1])
  list(mountpoint = mountpoint, path = if (nzchar(rel)) file.path(mountpoint, rel) else mountpoint)
}

## Content of a cgroup file, looked up from our cgroup towards the mount
## point (limits may be set on a parent only); NA if not found. Several fields
## give a vector, all looked up from one resolution of the directory.
getCGroupsValue <- function(field, controller = NULL, root = cgroups_root()) {
  path <- getCGroupsPath(controller, root = root)
  if (is.na(path)) return(rep(NA_character_, length(field)))
  top <- attr(path, "mountpoint")
  if (is.null(top)) top <- path
  vapply(field, function(f) cgroups_lookup(f, path, top), "", USE.NAMES = FALSE)
}

cgroups_lookup <- function(field, path, top) {
  top <- normalizePath(top, mustWork = FALSE)
  repeat {
    file <- file.path(path, field)
    if (file.exists(file)) {
      value <- read_lines_or_empty(file)
      return(if (length(value) == 0L) NA_character_ else trimws(value[1]))
    }
    if (normalizePath(path, mustWork = FALSE) == top) break
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
  values <- getCGroupsValue(c("cpu.cfs_quota_us", "cpu.cfs_period_us"), controller = "cpu", root = root)
  quota <- suppressWarnings(as.numeric(values[1]))
  period <- suppressWarnings(as.numeric(values[2]))
  if (is.na(quota) || is.na(period) || quota <= 0 || period <= 0) {
    return(NA_real_)
  }
  quota / period
}

## CPU ids of cgroups v2 'cpuset.cpus' (what the cgroup asks for; empty: inherited) or
## 'cpuset.cpus.effective' (what it is granted)
getCGroups2CpuSet <- function(field = c("cpuset.cpus", "cpuset.cpus.effective"), root = cgroups_root()) {
  field <- match.arg(field)
  value <- getCGroupsValue(field, controller = NULL, root = root)
  if (is.na(value)) return(integer(0L))
  parse_cpu_list(value)
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
