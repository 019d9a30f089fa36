#' Options and environment variables used by the parallelly package
#'
#' The defaults of the package can be changed with R options, set with [options()], and most
#' of them also with environment variables, which is handy for settings that belong to a
#' machine or a job rather than to a script. Options that are not set keep the defaults
#' listed below.
#'
#' @section Environment variables that set options:
#' When the package is loaded, an option `parallelly.<name>` that is not set yet takes the
#' value of the environment variable `R_PARALLELLY_<NAME>`, where `<NAME>` is the name in
#' upper case with dots replaced by underscores: for example `R_PARALLELLY_AVAILABLECORES_MIN`
#' for `parallelly.availableCores.min`, and `R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT` for
#' `parallelly.makeNodePSOCK.connectTimeout`. The text is converted to the type of the option
#' (logical, integer, number, or text); options that take several values, such as
#' `parallelly.availableCores.methods`, are given as a comma-separated list. A value that
#' cannot be converted is an error of class `parallellyOptionError` when the package loads.
#' Changing such an environment variable after the package was loaded has no effect.
#'
#' The variables marked 'env' below are handled like this. For compatibility with older
#' versions of the \pkg{future} package, every option `parallelly.*` may also be given under
#' the name `future.*`, and every environment variable `R_PARALLELLY_*` as `R_FUTURE_*`.
#'
#' @section Core and worker counts:
#' \describe{
#'   \item{`parallelly.availableCores.methods` (env)}{The methods [availableCores()] asks,
#'     by default all of them.}
#'   \item{`parallelly.availableCores.fallback` (env)}{The number of cores to use when only
#'     the hardware and OS methods give an answer (e.g. on a shared machine where nothing
#'     else limits R). Not set by default.}
#'   \item{`parallelly.availableCores.custom`}{A function without arguments that returns a
#'     number of cores; used by method `"custom"`.}
#'   \item{`parallelly.availableCores.min` (env)}{The smallest value a method may give
#'     (default 1); smaller values are raised to it.}
#'   \item{`parallelly.availableCores.system` (env)}{The number of cores of the machine,
#'     instead of asking [parallel::detectCores()].}
#'   \item{`parallelly.availableCores.logical` (env)}{Whether to count logical CPUs (`TRUE`,
#'     the default) or physical cores.}
#'   \item{`parallelly.availableCores.omit` (env)}{The default of argument `omit` of
#'     [availableCores()] (0).}
#'   \item{`parallelly.availableCores.max` (env)}{The default of argument `max` of
#'     [availableCores()] (`Inf`).}
#'   \item{`parallelly.availableCores.fraction` (env)}{The default of argument `fraction`
#'     of [availableCores()] (1): the fraction of the cores to use.}
#'   \item{`parallelly.availableCores.methods.excludes` (env)}{Methods [availableCores()]
#'     never asks, whatever its `methods` (a character vector or comma-separated names).}
#'   \item{`parallelly.availableWorkers.methods` (env)}{The methods [availableWorkers()]
#'     asks.}
#'   \item{`parallelly.availableWorkers.methods.excludes` (env)}{Methods
#'     [availableWorkers()] never asks, whatever its `methods`.}
#'   \item{`parallelly.availableWorkers.custom`}{A function without arguments that returns
#'     a character vector of hostnames; used by method `"custom"`.}
#'   \item{`parallelly.localhost.hostname`}{The name that stands for the local machine in
#'     the results of [availableWorkers()] and for local workers (default `"localhost"`).}
#'   \item{`parallelly.availableConnections`}{The maximum number of R connections, instead
#'     of probing for it (at least 3).}
#'   \item{`parallelly.availableConnections.tries`}{How many connections
#'     [availableConnections()] opens at most while probing (default 16384).}
#'   \item{`parallelly.slurm_expand_nodelist.manual`}{If `TRUE`, Slurm node lists are
#'     expanded by the package itself even when Slurm's `scontrol` is available.}
#' }
#'
#' @section Guarding against too many local workers:
#' \describe{
#'   \item{`parallelly.maxWorkers.localhost` (env)}{Two numbers, the soft and the hard limit
#'     on the ratio of local workers to available cores, by default `c(1.0, 3.0)`. With
#'     more workers than the soft limit allows, [makeClusterPSOCK()] gives a warning; with
#'     more than the hard limit allows, it stops with an error of class
#'     `parallellyArgumentError`. A single number is used for both limits, and `Inf`
#'     disables a limit. For a single call, `workers = I(n)` skips the check. The cores are
#'     counted by [availableCores()], without the methods in
#'     `parallelly.maxWorkers.localhost.ignore`.}
#'   \item{`parallelly.maxWorkers.localhost.ignore` (env)}{The [availableCores()] methods
#'     left out when counting the cores for this check, by default
#'     `"_R_CHECK_LIMIT_CORES_"`, so that the two-core limit of `R CMD check` does not turn
#'     into an error.}
#' }
#'
#' @section Forked processing:
#' \describe{
#'   \item{`parallelly.fork.enable` (env)}{`TRUE` or `FALSE` decides whether
#'     [supportsMulticore()] allows forked processing wherever it is possible; `NA` (the
#'     default) leaves the decision to the package.}
#'   \item{`parallelly.supportsMulticore.disableOn` (env)}{Where forked processing is
#'     disabled, by default `c("rstudio_console", "rstudio_terminal")`. Only
#'     `"rstudio_console"` and `"rstudio_term"` have an effect (as in the original
#'     package, the default entry `"rstudio_terminal"` does not disable the RStudio
#'     terminal).}
#'   \item{`parallelly.supportsMulticore.unstable` (env)}{`"warn"` (the default) gives a
#'     one-time warning when forked processing is disabled in the RStudio Console; any
#'     other value, e.g. `"quiet"`, does not.}
#' }
#'
#' @section Creating clusters:
#' These set the defaults of arguments of [makeClusterPSOCK()] and [makeNodePSOCK()].
#' \describe{
#'   \item{`parallelly.makeNodePSOCK.setup_strategy` (env)}{`"auto"` (default) forks the
#'     workers of a host from one R process per host (`"fork"`) on Linux unless there is
#'     start-up code per worker (`rscript_startup`, `-e` in `rscript_args`), else starts them
#'     all at once (`"parallel"`), as it does for no more local workers than cores (at
#'     most 4) while no fork server runs for them, and for a single worker on a node of a
#'     Slurm or Grid Engine job (`rshcmd = "<srun>"`, `"<qrsh>"`);
#'     `"sequential"` starts them one after the other (see [makeNodePSOCK()]).}
#'   \item{`parallelly.makeNodePSOCK.validate` (env)}{If `TRUE` (default), the session
#'     information of each worker is collected after setup.}
#'   \item{`parallelly.makeNodePSOCK.connectTimeout` (env)}{Seconds to wait for the workers
#'     to connect (default 120).}
#'   \item{`parallelly.makeNodePSOCK.timeout` (env)}{Seconds a socket may stay idle before
#'     its reader gives up (default 2592000, 30 days).}
#'   \item{`parallelly.makeNodePSOCK.useXDR` (env)}{If `TRUE`, data are serialized in the
#'     big-endian XDR format; `FALSE` (default) uses the native format, which is faster.}
#'   \item{`parallelly.makeNodePSOCK.socketOptions` (env)}{The socket options set on the
#'     workers (default `"no-delay"`); `"NULL"` sets none.}
#'   \item{`parallelly.makeNodePSOCK.rshcmd` (env)}{An external SSH client command. This
#'     version launches remote workers with its built-in client only (`NULL`, the
#'     default): another value only changes the command shown by `dryrun = TRUE`, and
#'     launching a remote worker with it fails with a `parallellyLaunchError`.}
#'   \item{`parallelly.makeNodePSOCK.rshopts` (env)}{Options for the SSH connection; the
#'     built-in client understands `-p`, `-l`, `-F` and `-o` with `Port`, `User`,
#'     `UserKnownHostsFile` and `StrictHostKeyChecking`.}
#'   \item{`parallelly.makeNodePSOCK.tries`, `parallelly.makeNodePSOCK.tries.delay`
#'     (env)}{How many times (default 3), and how many seconds apart (default 15), a
#'     sequentially set up worker that failed to connect is launched again.}
#'   \item{`parallelly.makeNodePSOCK.rscript_label` (env)}{If `TRUE`, or a string, each
#'     worker's command line gets a label (`TRUE`: the script, process ID, host and user of
#'     the main R process), so that workers can be told apart in `ps` or `top`.}
#'   \item{`parallelly.makeNodePSOCK.calls` (env)}{If `TRUE`, the call stack that created a
#'     worker is added to its command line.}
#'   \item{`parallelly.makeNodePSOCK.autoRestart`, `parallelly.makeNodePSOCK.retries`
#'     (env)}{The defaults of arguments `autoRestart` and `retries` of [makeNodePSOCK()] (0):
#'     how often a dead node is relaunched, and its task sent again. As options they also
#'     reach the workers that \pkg{future}'s `plan(cluster)` and `plan(multisession)` start.}
#'   \item{`parallelly.makeNodePSOCK.rscript_call` (env)}{The default of argument
#'     `rscript_call` of [makeNodePSOCK()]: R code (a string or a call) that starts the
#'     worker's loop.}
#'   \item{`parallelly.makeNodePSOCK.sessionInfo.pkgs` (env)}{If `TRUE`, the session
#'     information collected from each worker includes its installed packages.}
#'   \item{`parallelly.makeNodePSOCK.autoKill`, `parallelly.makeNodePSOCK.master.localhost.hostname`,
#'     `parallelly.makeNodePSOCK.port.increment`, `parallelly.makeNodePSOCK.tries.port`}{
#'     Accepted for compatibility, without effect: workers started by this package are
#'     always stopped with their cluster, and ports are chosen as described in
#'     [makeClusterPSOCK()].}
#' }
#'
#' @section Talking to workers:
#' \describe{
#'   \item{`parallelly.recvData.spin` (env)}{Seconds (default `2e-4`) during which the
#'     connection of a worker on this machine is polled for its answer before a blocking
#'     read: the answer to a small task often comes sooner than a process that sleeps in a
#'     blocking read wakes up again. The spin shortens by itself (down to one poll) while
#'     answers take longer than it, and is whole again once they come soon; `0` turns it
#'     off. It stands down (for a blocking read at once) whenever more threads are runnable
#'     on the machine than it has cores (read from `/proc/loadavg` every few polls): then a
#'     spinning master would hold a core that a worker, or another program, needs, and the
#'     next 32 receives do not spin at all. Workers on other hosts are not polled. Read at
#'     every receive that spins.}
#' }
#'
#' @section R internals:
#' Some speed and safety of this package comes from parts of R that are not its API for
#' packages (a C variable, the descriptor of R's listening socket, unexported functions of
#' the parallel package). Each is checked on the running R when the package loads; one whose
#' check fails is not used, and the package does what base R and the reference do instead.
#' `parallelly:::r_internals()` lists them, with the result of each check.
#' \describe{
#'   \item{`parallelly.internals.disable` (env)}{Names of R internals not to use even
#'     though their checks passed (`"all"` for all of them): `"R_TempDir"` (no fork
#'     server: `setup_strategy = "fork"` launches workers as `"parallel"` does),
#'     `"listen_socket"` (the master's port listens on all interfaces instead of
#'     127.0.0.1 only), `"work_loop"` (workers serve with base R's loop), `"direct_start"`
#'     (local workers of this R start through `Rscript` and R's front-end script instead of
#'     as R's binary directly), `"wire_names"`
#'     (the functions `eval` and `lapply` travel with each task), `"task_position"` (an
#'     error about a crashed task does not say which task), `"transport_methods"`
#'     (parallel's own methods send tasks and read results: no protection from stale
#'     results, no self-healing; read when the package loads) and `"is_child"`
#'     ([isForkedChild()] does not ask parallel). A fork server reads the environment
#'     variable when it starts.}
#' }
#'
#' @section Remote workers over SSH:
#' The built-in SSH client (see `vignette("remote-clusters", package = "parallelly")`)
#' reads these when it opens a connection, so they may be changed at any time.
#' \describe{
#'   \item{`parallelly.ssh.config` (env `R_PARALLELLY_SSH_CONFIG`)}{The OpenSSH client
#'     configuration file to read, by default `~/.ssh/config` (then `/etc/ssh/ssh_config`).
#'     The client implements `Host`, `Match` (`host`, `originalhost`, `user`, `localuser`,
#'     `all`, negatable with `!`), `Include`, `HostName`, `User`, `Port`, `IdentityFile`,
#'     `IdentitiesOnly`, `IdentityAgent none`, `AddressFamily`, `ProxyJump` (chains too),
#'     `UserKnownHostsFile`,
#'     `StrictHostKeyChecking`, `ConnectTimeout`, `HashKnownHosts`, `Compression`,
#'     `ServerAliveInterval` with `ServerAliveCountMax` (a host that acknowledges nothing
#'     for interval x count after a keepalive is lost), and the algorithm policy (`Ciphers`, `MACs`, `KexAlgorithms`,
#'     `HostKeyAlgorithms`, `PubkeyAcceptedAlgorithms`, with `+`, `-` and `^`). A keyword
#'     that would change where or how to connect but is not implemented (`ProxyCommand`,
#'     `HostKeyAlias`, `CanonicalizeHostname`, `BindAddress`, `CertificateFile`,
#'     `ControlMaster`/`ControlPath`, `ForwardAgent`, `RemoteCommand`, the forwardings, ...;
#'     other `Match` criteria such as `exec`) makes that host use OpenSSH's `ssh` (see
#'     `parallelly.ssh.client`). Keywords that do not (`SendEnv`, `LogLevel`, `BatchMode`,
#'     ...) are ignored. A keyword OpenSSH does not know is an error naming it and the host, as
#'     OpenSSH refuses it, unless an earlier `IgnoreUnknown` lists it. The vignette lists them all.}
#'   \item{`parallelly.ssh.client` (env `R_PARALLELLY_SSH_CLIENT`)}{Which SSH client
#'     remote workers use: `"auto"` (default) the built-in one, and OpenSSH's `ssh` for a
#'     host whose setup (ssh configuration, `rshopts`, a password or prompts at login) the
#'     built-in one cannot honour; `"built-in"` the built-in one only (such a host is an
#'     error that says why, as with `rshcmd = "<ssh>"`); `"external"` OpenSSH's `ssh` for
#'     every host. A host that offers only algorithms the built-in client lacks (a post-quantum key
#'     exchange, say) also uses `ssh` under `"auto"`. `summary()` names each node's client.}
#'   \item{`parallelly.ssh.knownHosts` (env `R_PARALLELLY_SSH_KNOWN_HOSTS`)}{The
#'     known_hosts file with the host keys to trust; by default the `UserKnownHostsFile` of
#'     the configuration, else `~/.ssh/known_hosts`.}
#'   \item{`parallelly.ssh.acceptNewHostKeys` (env
#'     `R_PARALLELLY_SSH_ACCEPTNEWHOSTKEYS`)}{If `TRUE`, the key of a host that is not yet
#'     in known_hosts is accepted and added to it (like OpenSSH's
#'     `StrictHostKeyChecking=accept-new`). A key that differs from the recorded one is
#'     always refused. Default `FALSE`.}
#'   \item{`parallelly.ssh.timeout`}{Seconds that [isNodeAlive()] and [killNode()] wait for
#'     a remote host to answer when their `timeout` is 0 (default 30).}
#' }
#'
#' @section Debugging:
#' \describe{
#'   \item{`parallelly.debug`}{If `TRUE`, the package prints time-stamped messages about
#'     what it does. Environment variable `R_PARALLELLY_DEBUG` sets it at load time. When it
#'     is unset, option `future.debug` decides (so `options(future.debug = TRUE)` shows these
#'     messages too).}
#' }
#'
#' @section Other environment variables:
#' \describe{
#'   \item{`R_PARALLELLY_RANDOM_PORTS`}{The ports [freePort()] chooses from for
#'     `port = "random"`, as a comma-separated list of ports and ranges such as
#'     `"20000:20999,30000"` (default `"11000:11999"`).}
#'   \item{`R_PARALLEL_PORT`}{The port used for `port = "auto"`, as in the \pkg{parallel}
#'     package.}
#'   \item{`R_PARALLELLY_R_CMD_CHECK_NICE`}{When the package is loaded under
#'     `R CMD check`, it sets `R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT` and
#'     `R_PARALLELLY_MAKENODEPSOCK_TIMEOUT` to 120 seconds and turns on
#'     `R_PARALLELLY_MAKENODEPSOCK_SESSIONINFO_PKGS` and
#'     `R_PARALLELLY_MAKENODEPSOCK_RSCRIPT_LABEL`; if they are not set yet, it also sets
#'     `R_PARALLELLY_RANDOM_PORTS` to `"20000:39999"` and `_R_CHECK_LIMIT_CORES_` to
#'     `TRUE`. Options set explicitly still win. Setting this variable to `FALSE` turns
#'     all of this off.}
#' }
#'
#' @examples
#' ## The current value of an option (NULL when not set)
#' getOption("parallelly.availableCores.fallback")
#'
#' ## Never let availableCores() report more than two cores in this session
#' oopts <- options(parallelly.availableCores.max = 2)
#' availableCores()
#' options(oopts)
#'
#' ## The same from the shell, before R starts:
#' ##   export R_PARALLELLY_AVAILABLECORES_MAX=2
#'
#' @aliases
#' parallelly.debug
#' parallelly.availableCores.methods parallelly.availableCores.fallback
#' parallelly.availableCores.custom parallelly.availableCores.min
#' parallelly.availableCores.system parallelly.availableCores.logical
#' parallelly.availableCores.omit parallelly.availableCores.max
#' parallelly.availableCores.fraction parallelly.availableCores.methods.excludes
#' parallelly.availableWorkers.methods parallelly.availableWorkers.custom
#' parallelly.availableWorkers.methods.excludes
#' parallelly.localhost.hostname
#' parallelly.availableConnections parallelly.availableConnections.tries
#' parallelly.slurm_expand_nodelist.manual
#' parallelly.maxWorkers.localhost parallelly.maxWorkers.localhost.ignore
#' parallelly.fork.enable parallelly.supportsMulticore.disableOn
#' parallelly.supportsMulticore.unstable
#' parallelly.makeNodePSOCK.setup_strategy parallelly.makeNodePSOCK.validate
#' parallelly.makeNodePSOCK.connectTimeout parallelly.makeNodePSOCK.timeout
#' parallelly.makeNodePSOCK.useXDR parallelly.makeNodePSOCK.socketOptions
#' parallelly.makeNodePSOCK.rshcmd parallelly.makeNodePSOCK.rshopts
#' parallelly.makeNodePSOCK.tries parallelly.makeNodePSOCK.tries.delay
#' parallelly.makeNodePSOCK.tries.port parallelly.makeNodePSOCK.rscript_label
#' parallelly.makeNodePSOCK.calls parallelly.makeNodePSOCK.sessionInfo.pkgs
#' parallelly.makeNodePSOCK.autoRestart parallelly.makeNodePSOCK.retries
#' parallelly.makeNodePSOCK.rscript_call
#' parallelly.makeNodePSOCK.autoKill
#' parallelly.makeNodePSOCK.master.localhost.hostname
#' parallelly.makeNodePSOCK.port.increment
#' parallelly.ssh.config parallelly.ssh.knownHosts parallelly.ssh.acceptNewHostKeys
#' parallelly.ssh.timeout parallelly.ssh.client R_PARALLELLY_SSH_CLIENT
#' R_PARALLELLY_DEBUG R_PARALLELLY_RANDOM_PORTS R_PARALLEL_PORT
#' R_PARALLELLY_R_CMD_CHECK_NICE
#' R_PARALLELLY_AVAILABLECORES_METHODS R_PARALLELLY_AVAILABLECORES_FALLBACK
#' R_PARALLELLY_AVAILABLECORES_MIN R_PARALLELLY_AVAILABLECORES_SYSTEM
#' R_PARALLELLY_AVAILABLECORES_LOGICAL R_PARALLELLY_AVAILABLECORES_OMIT
#' R_PARALLELLY_AVAILABLECORES_MAX R_PARALLELLY_AVAILABLEWORKERS_METHODS
#' R_PARALLELLY_MAXWORKERS_LOCALHOST R_PARALLELLY_MAXWORKERS_LOCALHOST_IGNORE
#' R_PARALLELLY_FORK_ENABLE R_PARALLELLY_SUPPORTSMULTICORE_DISABLEON
#' R_PARALLELLY_SUPPORTSMULTICORE_UNSTABLE
#' R_PARALLELLY_MAKENODEPSOCK_SETUP_STRATEGY R_PARALLELLY_MAKENODEPSOCK_VALIDATE
#' R_PARALLELLY_MAKENODEPSOCK_CONNECTTIMEOUT R_PARALLELLY_MAKENODEPSOCK_TIMEOUT
#' R_PARALLELLY_MAKENODEPSOCK_USEXDR R_PARALLELLY_MAKENODEPSOCK_SOCKETOPTIONS
#' R_PARALLELLY_MAKENODEPSOCK_RSHCMD R_PARALLELLY_MAKENODEPSOCK_RSHOPTS
#' R_PARALLELLY_MAKENODEPSOCK_TRIES R_PARALLELLY_MAKENODEPSOCK_TRIES_DELAY
#' R_PARALLELLY_MAKENODEPSOCK_RSCRIPT_LABEL R_PARALLELLY_MAKENODEPSOCK_SESSIONINFO_PKGS
#' R_PARALLELLY_MAKENODEPSOCK_AUTOKILL
#' R_PARALLELLY_MAKENODEPSOCK_MASTER_LOCALHOST_HOSTNAME
#' R_PARALLELLY_MAKENODEPSOCK_PORT_INCREMENT R_PARALLELLY_MAKENODEPSOCK_CALLS
#' R_PARALLELLY_SSH_CONFIG R_PARALLELLY_SSH_KNOWN_HOSTS
#' R_PARALLELLY_SSH_ACCEPTNEWHOSTKEYS
#' @name parallelly.options
#' @seealso [availableCores()], [availableWorkers()], [makeClusterPSOCK()],
#' [supportsMulticore()], [freePort()]
NULL
