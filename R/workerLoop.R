# The worker loop of our local workers: the messages of base R's parallel:::workLoop()
# (EXEC answered by VALUE with the task's tag, DONE closes the connection; a task's error
# comes back as a "snow-try-error" string with success = FALSE; an interrupt ends the task
# without an answer), with less R on the way per message: no S3 dispatch for each read and
# write, no summary() of the connection inside serialize(), one handler made once.
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
  "con<-master$con;xdr<-!inherits(master,\"SOCK0node\");success<-TRUE;",
  "handler<-function(e){success<<-FALSE;structure(conditionMessage(e),class=c(\"snow-try-error\",\"try-error\"))};",
  "repeat{msg<-NULL;",
  "more<-tryCatch({msg<-unserialize(con);",
  "if(msg$type==\"DONE\"){close(con);FALSE}else{",
  "if(msg$type==\"EXEC\"){success<-TRUE;t1<-proc.time();",
  "value<-tryCatch(do.call(msg$data$fun,msg$data$args,quote=TRUE),error=handler);",
  "t2<-proc.time();",
  "value<-list(type=\"VALUE\",value=value,success=success,time=t2-t1,tag=msg$data$tag);",
  "msg<-NULL;serialize(value,con,xdr=xdr,ascii=FALSE);value<-NULL};",
  "TRUE}},interrupt=function(e)TRUE);",
  "if(!more)break}}"
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
