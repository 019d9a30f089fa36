# Grid Engine facts for the "<qrsh>" node kind (R/kind-qrsh.R): the job this R session runs
# in, the host it runs on, and the script that runs a worker as a task of that job.

# The job the master runs in; an error naming the argument when there is none (or when it
# has no parallel environment, whose hosts are the only ones `qrsh -inherit` reaches).
qrsh_job_id <- function() {
  job <- Sys.getenv("JOB_ID", "")
  if (!grepl("^[0-9]+$", job) || !nzchar(Sys.getenv("PE_HOSTFILE"))) {
    stop_arg("rshcmd", "is \"<qrsh>\", which starts workers as tasks of the Grid Engine job this R session runs in (qrsh -inherit), but %s: run R in a job with a parallel environment (qsub -pe NAME SLOTS), or use another 'rshcmd'",
             if (!grepl("^[0-9]+$", job)) "JOB_ID is not set" else "PE_HOSTFILE is not set (the job has no parallel environment)")
  }
  job
}

# The path of qrsh, as the PATH has it: not resolved through symlinks (Debian's client
# programs are links to one wrapper script that dispatches on the name it was called by).
qrsh_program <- function() {
  key <- paste("qrsh (as linked)", Sys.getenv("PATH"), sep = "\r")
  found <- get0(key, envir = .package$programs, inherits = FALSE)
  if (is.null(found)) {
    found <- Sys.which("qrsh")
    found <- if (nzchar(found)) unname(found) else "qrsh"
    assign(key, found, envir = .package$programs)
  }
  found
}

# Whether `worker` is the host the master runs on: its workers are started as local ones.
# Grid Engine names hosts as they resolve; compared without their domains.
qrsh_is_master_host <- function(worker) {
  if (!nzchar(Sys.getenv("PE_HOSTFILE"))) return(FALSE)
  short <- function(x) sub("[.].*$", "", tolower(x))
  identical(short(as.character(worker)), short(Sys.info()[["nodename"]]))
}

# The sh script that runs `command` (a worker's command line) as the task's child. Grid
# Engine ends the whole job, master included, when a task of it dies by a signal ("tightly
# integrated parallel task ... failed - killing job"), so the task is this script, which
# ends normally with the worker's status (128 + N when signal N killed it). It signals the
# worker with the signal numbers it reads, one a line, from its stdin: what the master
# writes to the control FIFO that is qrsh's stdin (killNode() without a task of its own, for
# which the job may have no slot left).
qrsh_task_script <- function(command) {
  paste(
    "exec 3<&0",
    paste(command, "& p=$!"),
    "{ while read -r s; do case $s in [1-9]|[1-9][0-9]) kill -\"$s\" \"$p\" 2>/dev/null ;; esac; done; } <&3 &",
    "r=$!",
    "exec 3<&-",
    "while :; do wait \"$p\"; s=$?; kill -0 \"$p\" 2>/dev/null || break; done",
    "kill \"$r\" 2>/dev/null",
    "exit \"$s\"",
    sep = "\n")
}

# The argument vector (for /bin/sh) that starts one task: sh only creates the control FIFO
# and opens it read-write as qrsh's stdin (so that opening it never blocks, and a write to
# it fails at once once qrsh is gone), then is replaced by qrsh itself, our child.
qrsh_task_argv <- function(qrsh, fifo, host, command) {
  c("-c", "f=$1; shift; mkfifo -m 600 \"$f\" || exit 126; exec \"$@\" <>\"$f\"", "sh",
    fifo, qrsh, "-inherit", "-V", host, command)
}

# Write signal `signal` to the control FIFO of a task: TRUE when written, FALSE when qrsh no
# longer reads it (a non-blocking open fails when there is no reader).
qrsh_send_signal <- function(fifo, signal) {
  if (!is.character(fifo) || is.na(fifo) || !file.exists(fifo)) return(FALSE)
  con <- tryCatch(suppressWarnings(fifo(fifo, open = "w", blocking = FALSE)), error = function(e) NULL)
  if (is.null(con)) return(FALSE)
  on.exit(close(con))
  ok <- tryCatch({
    writeLines(as.character(as.integer(signal)), con)
    flush(con)
    TRUE
  }, error = function(e) FALSE)
  ok
}
