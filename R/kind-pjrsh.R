# The "<pjrsh>" keyword (Fujitsu's job manager, PJM, as the reference's development line
# has it): not supported yet. There is no PJM here to test a launcher against, so the
# keyword (and rshcmd = "<hpc>" inside a PJM job) is a clear error rather than an untested
# launcher. The kind never launches a worker: option resolution stops at reachability().

pjrsh_unsupported <- function(...) {
  stop_arg("rshcmd", "is \"<pjrsh>\" (or \"<hpc>\" inside a Fujitsu PJM job, PJM_JOBID is set), which is not supported yet by this version of parallelly: start the workers with another 'rshcmd' (e.g. \"<ssh>\"), or as local workers")
}

node_kind_pjrsh <- list(
  name = "pjrsh",
  priority = 12,
  claims = function(opts) identical(opts$rshcmd, "<pjrsh>"),
  launcher = pjrsh_unsupported,
  rshcmd = "<pjrsh>",
  job_variable = "PJM_JOBID",
  reachability = pjrsh_unsupported,
  answers_locally = function(id) TRUE,
  group = function(id) "pjrsh",
  probe = pjrsh_unsupported,
  signal = pjrsh_unsupported,
  stop = function(ids, background) invisible(),
  exit_cause = function(ids) rep(NA_character_, length(ids)),
  usage = function(ids, timeout) unknown_usage(ids),
  last_output = function(id, n) character(0),
  after_kill = function(id) invisible()
)
