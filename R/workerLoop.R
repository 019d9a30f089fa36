# The worker loop of our local workers: the messages of base R's parallel:::workLoop()
# (EXEC answered by VALUE with the task's tag, DONE closes the connection; a task's error
# comes back as a "snow-try-error" string with success = FALSE; an interrupt ends the task
# without an answer), with less R on the way per message: no S3 dispatch for each read and
# write, no summary() of the connection inside serialize(), and no tryCatch() per message.
#
# Base R's loop sets up two tryCatch() calls for every message (one for interrupts around
# it, one for errors around the task), which is most of what a worker does for a tiny task.
# Here one tryCatch() (errors and interrupts) stays set up while tasks succeed: a condition
# ends the inner loop, the outer one answers it (a task's error) or not (an interrupt) and
# sets the handlers up again. An error that is not the task's (a broken connection) is
# raised again and ends the worker, as in base R's loop.
#
# A fresh local worker does not run parallel:::.workRSOCK() either: its entry code parses the
# same KEY=VALUE arguments, sends output where OUT= says, prints the same "starting worker"
# line, connects with the same retries until SETUPTIMEOUT and serves with this loop. So it
# never loads the parallel namespace, which costs a worker ~20 ms of CPU at start-up (~12%
# of an R start). A task that needs parallel loads it as usual. A worker is a fresh Rscript
# that has not loaded this package, so the code travels on its command line and the loop is
# made in the base environment (a task's globals cannot shadow what it calls). Forked workers
# connect the same way (R/forkServerProcess.R).
#
# Workers on other hosts, where this package may be missing or another R runs, keep base
# R's entry code.

worker_loop_code <- paste0(
  "function(master){",
  "con<-master$con;xdr<-!inherits(master,\"SOCK0node\");msg<-NULL;t1<-NULL;task<-FALSE;",
  "repeat{",
  # Serve until DONE (NULL), an interrupt (TRUE) or an error (its condition).
  "r<-tryCatch(repeat{msg<-NULL;msg<-unserialize(con);",
  "if(msg$type==\"DONE\"){close(con);break};",
  "if(msg$type==\"EXEC\"){t1<-proc.time();task<-TRUE;",
  "value<-do.call(msg$data$fun,msg$data$args,quote=TRUE);",
  "task<-FALSE;t2<-proc.time();",
  "value<-list(type=\"VALUE\",value=value,success=TRUE,time=t2-t1,tag=msg$data$tag);",
  "msg<-NULL;serialize(value,con,xdr=xdr,ascii=FALSE);value<-NULL}},",
  "error=function(e)e,interrupt=function(e)TRUE);",
  "if(is.null(r))break;",
  "intask<-task;task<-FALSE;",
  "if(isTRUE(r))next;",
  "if(!intask)stop(r);",
  "t2<-proc.time();",
  "value<-structure(conditionMessage(r),class=c(\"snow-try-error\",\"try-error\"));r<-NULL;",
  "value<-list(type=\"VALUE\",value=value,success=FALSE,time=t2-t1,tag=msg$data$tag);",
  "msg<-NULL;serialize(value,con,xdr=xdr,ascii=FALSE);value<-NULL}}"
)

# `Rscript -e` code that starts a local worker with the loop above: what .workRSOCK() does
# with setup strategy "sequential" (the master sends its handshake as a task). No
# backslashes: R's front-end script passes -e code through the shell's echo.
lean_worker_entry_code <- paste0(
  # A function call, not local(): local() evaluates in a frame of the global environment, where
  # future's relay of immediate conditions stops looking for the worker's `master` node.
  "(function(){a<-commandArgs(TRUE);",
  # The last KEY=VALUE of a key wins, as in .workRSOCK()'s loop over the arguments.
  "arg<-function(k,d){v<-a[startsWith(a,paste0(k,\"=\"))];if(length(v))substring(v[length(v)],nchar(k)+2L)else(d)};",
  "master<-arg(\"MASTER\",\"localhost\");port<-as.integer(arg(\"PORT\",NA));",
  "if(is.na(port))stop(\"PORT must be specified\");",
  "out<-arg(\"OUT\",Sys.getenv(\"R_SNOW_OUTFILE\"));timeout<-as.integer(arg(\"TIMEOUT\",\"2592000\"));",
  "setup<-as.numeric(arg(\"SETUPTIMEOUT\",\"120\"));xdr<-as.logical(arg(\"XDR\",\"TRUE\"));",
  "if(nzchar(out)){o<-file(out,open=\"a\");sink(o);sink(o,type=\"message\")};",
  "cat(sprintf(\"starting worker pid=%d on %s:%d at %s\",Sys.getpid(),master,port,format(Sys.time(),\"%H:%M:%OS3\")),fill=TRUE);",
  "t0<-Sys.time();delay<-0.1;",
  "repeat{con<-tryCatch(socketConnection(master,port=port,blocking=TRUE,open=\"a+b\",timeout=timeout),error=identity);",
  "if(inherits(con,\"connection\"))break;",
  "if(difftime(Sys.time(),t0,units=\"secs\")>setup)stop(con);Sys.sleep(delay);delay<-1.5*delay};",
  # Named as in base R, so that tracebacks and sys.calls() show a workLoop() call.
  "workLoop<-", worker_loop_code, ";environment(workLoop)<-baseenv();",
  "workLoop(structure(list(con=con),class=if(xdr)\"SOCKnode\"else\"SOCK0node\"))})()"
)

# The loop as a function of this session (what the entry code makes on a worker), for a
# worker that runs in a process forked from one that has this package.
lean_work_loop <- function() eval(parse(text = worker_loop_code, keep.source = FALSE)[[1L]], baseenv())
