# Waiting for a local worker's answer: a short spin before a blocking read.
#
# A worker on this machine often answers a small task within a fraction of a millisecond,
# sooner than this process wakes up again once it sleeps in a blocking read (on an idle
# core, and more so in a virtual machine, the wake-up itself costs tens of microseconds).
# So before the blocking read of a local node's result, its connection is polled without
# waiting (socketSelect(timeout = 0), a few microseconds each) for at most the time that
# option parallelly.recvData.spin gives (seconds; 0 turns it off). Nodes on other hosts
# answer in milliseconds and are never polled.
#
# The spin adapts, so that long tasks do not pay it: when it gives up and the answer then
# takes longer than one whole spin, the next spin is half as long (down to one poll); when an
# answer comes while spinning, or soon after a spin gave up, the next spin is whole again.
# One budget for the session: a session runs one kind of work at a time.
#
# The spin stands down when the machine has no idle core: a spinning master then holds a
# core that the worker it waits for (or another worker, or another program) needs, and the
# answer comes later than without the spin (a round trip under load took ~1.07x base R's
# tuned one with the spin, ~0.9x without). Every few polls, starting with the first, the
# spin asks the kernel how many threads are runnable at this instant (/proc/loadavg, a few
# microseconds); more than there are cores, and it gives up at once for the blocking read,
# and the next spin_rest_calls reads do not spin at all: under load, a round trip is the CPU
# time of master and worker on one core, so even the poll and the look (~8 us of ~110) were
# a cost each time, and a machine that is busy now is busy a few milliseconds later.
# Load-balanced calls over as many local workers as cores do not spin at all: the first look
# comes before a worker woken by the task just sent is counted, so they spun a few polls per
# task for nothing (~0.05 ms more master CPU a task of 0.3-5 ms, measured).

spin_default <- 2e-4

# Reads that do not spin after one stood down (a few milliseconds of round trips).
spin_rest_calls <- 32L

spin_limit <- function(limit = getOption("parallelly.recvData.spin", spin_default)) {
  if (!is.numeric(limit) || length(limit) != 1L || is.na(limit) || limit < 0 || limit > 1) {
    stopf("Option", "Option 'parallelly.recvData.spin' must be one number of seconds between 0 and 1 (how long to poll a local worker's connection before a blocking read; 0 for never), not %s",
          paste(deparse(limit), collapse = " "))
  }
  limit
}

# The polls that fit in the option's time, from the cost of one poll on `cons` (measured
# once a session); recomputed (and the option checked) when the option changes.
spin_budget <- function(cons) {
  spin <- .package$spin
  option <- getOption("parallelly.recvData.spin", spin_default)
  if (identical(spin$option, option)) return(spin$polls)
  limit <- spin_limit(option)
  cost <- spin$poll_cost %||% poll_cost(cons)
  polls <- as.integer(min(limit / cost, 1e5))
  spin <- list(option = option, limit = limit, poll_cost = cost, max = polls, polls = polls)
  .package$spin <- spin
  spin$polls
}

# Polls between two looks at the cores (the first poll is followed by one).
spin_check_every <- 8L

# Seconds one socketSelect(timeout = 0) of `cons` takes here, with its share of the looks at
# the cores.
poll_cost <- function(cons) {
  t0 <- now()
  for (i in 1:32) {
    socketSelect(cons, FALSE, 0)
    if (i %% spin_check_every == 1L) backend_cores_taken()
  }
  max((now() - t0) / 32, 1e-6)
}

now <- function() unclass(Sys.time())

# Cores this process may run on (read once; no shell, unlike detectCores()).
spin_cores <- function() .package$spin_cores %||% (.package$spin_cores <- backend_usable_cores())

# Poll `cons` within the budget: their readiness when one has input; otherwise the time the
# spin gave up (pass it to spin_waited() once the blocking wait is over), or NULL when it did
# not spin: the budget is no polls at all, it rests, or it stood down as every core is taken.
# A resting spin returns first, before it reads its option: under load it costs a few
# hundred instructions, not ~18,000 (a bad option value is an error at the next read that
# spins). recvData() makes that test itself before it calls this (a call is ~4,000).
spin_for_input <- function(cons) {
  rest <- .package$spin_rest
  if (rest > 0L) {
    .package$spin_rest <- rest - 1L
    return(NULL)
  }
  polls <- spin_budget(cons)
  if (polls == 0L) return(NULL)
  for (i in seq_len(polls)) {
    ready <- socketSelect(cons, FALSE, 0)
    if (any(ready)) {
      if (i > 1L) .package$spin$polls <- .package$spin$max
      return(ready)
    }
    if (i %% spin_check_every == 1L && .package$spin_stands_down && isTRUE(backend_cores_taken())) {
      .package$spin_rest <- spin_rest_calls
      return(NULL)
    }
  }
  now()
}

# The blocking wait after a spin that gave up at `since` is over: adapt the next spin.
spin_waited <- function(since) {
  spin <- .package$spin
  waited <- now() - since
  spin$polls <- if (waited < spin$limit) spin$max else max(spin$polls %/% 2L, 1L)
  .package$spin <- spin
  invisible()
}
