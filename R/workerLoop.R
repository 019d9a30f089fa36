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
# It only replaces the loop: parallel:::.workRSOCK() still parses the command line, sends
# output where OUT= says, connects (with its retries and timeouts) and answers the master's
# handshake; our entry code runs it with `workLoop` bound to this loop. A worker is a fresh
# Rscript that has not loaded this package, so the loop travels as code on its command line
# and is made in the base environment (a task's globals cannot shadow what it calls). An R
# whose .workRSOCK() does not call workLoop() just runs its own loop.
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

# `Rscript -e` code that starts a local worker with the loop above.
lean_worker_entry_code <- paste0(
  "workRSOCK<-tryCatch(parallel:::.workRSOCK,error=function(e)parallel:::.slaveRSOCK);",
  "environment(workRSOCK)<-list2env(list(workLoop=local(", worker_loop_code, ",baseenv())),parent=environment(workRSOCK));",
  "workRSOCK()"
)

# The loop as a function of this session (what the entry code makes on a worker), for a
# worker that runs in a process forked from one that has this package.
lean_work_loop <- function() eval(parse(text = worker_loop_code, keep.source = FALSE)[[1L]], baseenv())
