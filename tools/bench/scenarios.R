# One benchmark measurement, run by run.R in a fresh R process:
#
#   Rscript tools/bench/scenarios.R <scenario> <system> <quick> <dispatcher> <out.rds>
#
# <scenario> is roundtrip, rtdisp, tasks, map, map100k, slowmap, shared, bigvec,
# drain, memory, tlsrt
# or tlsbig; <system> is mirai or
# a peer (psock, future, ...); <quick> and <dispatcher> are TRUE/FALSE
# (dispatcher only matters to mirai). Saves list(value, unit, note, runs)
# to <out.rds>: value is the median of runs (one per repetition), NA when
# the measurement is skipped (note says why).

library(parallel)

# Worker functions live in the global environment on purpose: a closure
# created inside a benchmark function would drag its whole frame (cluster
# objects, settings) into every serialized task and penalise the system
# that ships functions (PSOCK, mirai_map).
one <- function() 1
ident <- function(x) x
plus_one <- function(x) x + 1
nap <- function(x) {
  Sys.sleep(0.01)
  x
}
uses_big <- function(i) length(big) + i

settings <- function(quick) {
  if (quick) {
    list(rt_n = 300L, rt_future_n = 20L, warmup = 30L,
         tasks = 20000L, future_tasks = 50L, reps = 1L, future_reps = 1L,
         big_reps = 2L, queued = 200000L, drain = 50000L)
  } else {
    list(rt_n = 3000L, rt_future_n = 100L, warmup = 200L,
         tasks = 20000L, future_tasks = 200L, reps = 5L, future_reps = 3L,
         big_reps = 5L, queued = 200000L, drain = 200000L)
  }
}

now <- function() as.numeric(Sys.time())

# Median seconds per call of f(), each call timed separately.
median_call <- function(f, n, warmup) {
  for (i in seq_len(warmup)) f()
  t <- numeric(n)
  for (i in seq_len(n)) {
    t0 <- now()
    f()
    t[i] <- now() - t0
  }
  median(t)
}

# Tasks per second of run(n), one value per rep, checking every result
# against expect(n) so a fast-but-wrong run cannot pass unnoticed.
throughput <- function(run, n, reps, expect) {
  run(min(n, 100L)) # warm-up
  t <- vapply(seq_len(reps), function(i) {
    t0 <- now()
    r <- run(n)
    el <- now() - t0
    check_values(r, expect(n))
    el
  }, numeric(1))
  n / t
}

check_values <- function(r, expected) {
  scalar <- function(v) is.numeric(v) && length(v) == 1L
  ok <- length(r) == length(expected) && all(vapply(r, scalar, TRUE)) &&
    all(unlist(r) == expected)
  if (!ok) {
    same <- function(i) identical(suppressWarnings(as.numeric(r[[i]])),
                                  as.numeric(expected[i]))
    n <- min(length(r), length(expected))
    i <- which(!vapply(seq_len(n), same, TRUE))[1]
    stop(sprintf("wrong results (%d of %d expected)%s", length(r),
                 length(expected), if (is.na(i)) "" else paste0(
                   "; element ", i, " is: ", format(r[[i]])[1])))
  }
}

# runs: one measurement per repetition; the reported value is their median.
result <- function(runs, unit, note = "") {
  list(value = median(runs), unit = unit, note = note, runs = runs)
}

mirai_daemons <- function(n, dispatcher) {
  suppressMessages(library(mirai))
  mirai::daemons(n, dispatcher = dispatcher)
  if (mirai::status()$connections < n) stop("daemons did not all connect")
}

# Flags dispatcher rows measured without a working dispatcher: status()
# reports the task counts $mirai only when a dispatcher is running.
dispatcher_note <- function(cfg) {
  if (cfg$dispatcher && is.null(mirai::status()$mirai))
    "dispatcher not active (status() has no $mirai)" else ""
}

# --- 1. round trip of a trivial task, 1 worker (seconds per call) ----------

roundtrip_mirai <- function(cfg) {
  mirai_daemons(1L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  f <- function() mirai::mirai(1)[]
  stopifnot(identical(f(), 1))
  result(median_call(f, cfg$rt_n, cfg$warmup), "s/call", dispatcher_note(cfg))
}

# The dispatcher's cost on a round trip: one profile with and one without
# dispatcher side by side in the same process, measured in alternating
# blocks so that drift in the machine's speed affects both alike. The value
# is the ratio of the medians (with / without).
rtdisp_mirai <- function(cfg) {
  suppressMessages(library(mirai))
  mirai::daemons(1L, dispatcher = FALSE, .compute = "plain")
  mirai::daemons(1L, dispatcher = TRUE, .compute = "disp")
  on.exit({
    mirai::daemons(0, .compute = "plain")
    mirai::daemons(0, .compute = "disp")
  })
  m <- interleaved_medians("disp", "plain", cfg)
  note <- sprintf("interleaved medians: %.1f us with, %.1f us without",
                  m[1] * 1e6, m[2] * 1e6)
  result(m[1] / m[2], "x", note)
}

# Median round trips of two profiles measured in alternating blocks, so
# that drift in the machine's speed affects both alike.
interleaved_medians <- function(a, b, cfg) {
  call <- function(profile) {
    t0 <- now()
    mirai::mirai(1, .compute = profile)[]
    now() - t0
  }
  for (i in seq_len(cfg$warmup)) {
    call(a)
    call(b)
  }
  block <- 100L
  ta <- tb <- numeric(0)
  for (k in seq_len(max(1L, cfg$rt_n %/% block))) {
    ta <- c(ta, vapply(seq_len(block), function(i) call(a), 0))
    tb <- c(tb, vapply(seq_len(block), function(i) call(b), 0))
  }
  c(median(ta), median(tb))
}

roundtrip_psock <- function(cfg) {
  cl <- makePSOCKcluster(1L)
  on.exit(stopCluster(cl))
  f <- function() clusterCall(cl, one)
  stopifnot(identical(f(), list(1)))
  result(median_call(f, cfg$rt_n, cfg$warmup), "s/call")
}

roundtrip_future <- function(cfg) {
  suppressMessages(library(future))
  # I(1): multisession with a plain 1 runs in the current session instead.
  plan(multisession, workers = I(1))
  on.exit(plan(sequential))
  f <- function() value(future(1))
  stopifnot(identical(f(), 1))
  result(median_call(f, cfg$rt_future_n, 5L), "s/call")
}

# --- 2. throughput of many tiny independent tasks, 2 workers ---------------

tasks_mirai <- function(cfg) {
  mirai_daemons(2L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  run <- function(n) {
    ms <- lapply(seq_len(n), function(i) mirai::mirai(1))
    mirai::collect_mirai(ms)
  }
  result(throughput(run, cfg$tasks, cfg$reps, function(n) rep(1, n)),
         "tasks/s", dispatcher_note(cfg))
}

tasks_psock <- function(cfg, fun) {
  cl <- makePSOCKcluster(2L)
  on.exit(stopCluster(cl))
  run <- function(n) fun(cl, seq_len(n), ident)
  result(throughput(run, cfg$tasks, cfg$reps, seq_len), "tasks/s")
}
tasks_clusterApplyLB <- function(cfg) tasks_psock(cfg, clusterApplyLB)
tasks_parLapply <- function(cfg) tasks_psock(cfg, parLapply)

tasks_future <- function(cfg) {
  suppressMessages(library(future))
  plan(multisession, workers = 2L)
  on.exit(plan(sequential))
  run <- function(n) value(lapply(seq_len(n), function(i) future(i)))
  n <- cfg$future_tasks
  result(throughput(run, n, cfg$future_reps, seq_len), "tasks/s",
         sprintf("%d tasks, rate scaled", n))
}

# --- 3. map over 20,000 elements, 2 workers --------------------------------

map_mirai <- function(cfg) {
  mirai_daemons(2L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  run <- function(n) mirai::mirai_map(seq_len(n), ident)[]
  result(throughput(run, cfg$tasks, cfg$reps, seq_len), "tasks/s",
         dispatcher_note(cfg))
}

map_parLapplyLB <- function(cfg) tasks_psock(cfg, parLapplyLB)
map_clusterApplyLB <- function(cfg) tasks_psock(cfg, clusterApplyLB)

map_future.apply <- function(cfg) {
  if (!requireNamespace("future.apply", quietly = TRUE)) {
    return(result(NA, "tasks/s", "future.apply not installed"))
  }
  suppressMessages(library(future))
  plan(multisession, workers = 2L)
  on.exit(plan(sequential))
  run <- function(n) future.apply::future_lapply(seq_len(n), ident)
  result(throughput(run, cfg$tasks, cfg$reps, seq_len), "tasks/s")
}

# --- 3b. map over 100,000 tiny elements, 2 workers (elements/s) -----------

map100k_n <- function(cfg) if (cfg$quick) 20000L else 100000L

map100k_mirai <- function(cfg) {
  mirai_daemons(2L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  run <- function(n) mirai::mirai_map(seq_len(n), plus_one)[]
  n <- map100k_n(cfg)
  result(throughput(run, n, if (cfg$quick) 1L else 3L, function(n) seq_len(n) + 1),
         "tasks/s", paste(sprintf("%s elements", format(n, big.mark = ",")),
                          dispatcher_note(cfg)))
}

map100k_parLapply <- function(cfg) {
  cl <- makePSOCKcluster(2L)
  on.exit(stopCluster(cl))
  run <- function(n) parLapply(cl, seq_len(n), plus_one)
  n <- map100k_n(cfg)
  result(throughput(run, n, if (cfg$quick) 1L else 3L, function(n) seq_len(n) + 1),
         "tasks/s", sprintf("%s elements", format(n, big.mark = ",")))
}

# --- 3c. map over 1,000 elements that each sleep 10 ms (seconds) -----------

slowmap_time <- function(run, cfg) {
  n <- 1000L
  t <- vapply(seq_len(if (cfg$quick) 1L else 3L), function(i) {
    t0 <- now()
    r <- run(n)
    el <- now() - t0
    check_values(r, seq_len(n))
    el
  }, numeric(1))
  result(t, "s")
}

slowmap_mirai <- function(cfg) {
  mirai_daemons(2L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  r <- slowmap_time(function(n) mirai::mirai_map(seq_len(n), nap)[], cfg)
  r$note <- dispatcher_note(cfg)
  r
}

slowmap_psock <- function(cfg, fun) {
  cl <- makePSOCKcluster(2L)
  on.exit(stopCluster(cl))
  slowmap_time(function(n) fun(cl, seq_len(n), nap), cfg)
}
slowmap_parLapplyLB <- function(cfg) slowmap_psock(cfg, parLapplyLB)
slowmap_clusterApplyLB <- function(cfg) slowmap_psock(cfg, clusterApplyLB)

# --- 3d. a map of 50 whose `...` hold a 40 MB object (seconds) --------------

# The map sends `big` along with its elements; the reference sends it to
# each daemon once beforehand (everywhere()) and maps without it.
shared_time <- function(cfg, once) {
  mirai_daemons(2L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  big <- runif(5e6)
  run <- if (once) function() {
    mirai::collect_mirai(mirai::everywhere({}, big = big))
    mirai::mirai_map(1:50, uses_big)[]
  } else function() mirai::mirai_map(1:50, uses_big, big = big)[]
  run()
  t <- vapply(seq_len(if (cfg$quick) 2L else 5L), function(i) {
    t0 <- now()
    r <- run()
    el <- now() - t0
    check_values(r, 5e6 + 1:50)
    el
  }, numeric(1))
  result(t, "s", dispatcher_note(cfg))
}
shared_mirai <- function(cfg) shared_time(cfg, once = FALSE)
shared_once <- function(cfg) shared_time(cfg, once = TRUE)

# --- 4. 100 MB double vector to the worker and back (MB/s) -----------------

big_vector <- function() runif(12.5e6) # 1e8 bytes = 100 MB

# MB/s = 100 MB payload / round-trip seconds (the data crosses twice).
bigvec_rate <- function(f, x, reps) {
  stopifnot(identical(f(), x)) # also the warm-up
  t <- vapply(seq_len(reps), function(i) {
    t0 <- now()
    f()
    now() - t0
  }, numeric(1))
  result(100 / t, "MB/s")
}

bigvec_mirai <- function(cfg) {
  mirai_daemons(1L, cfg$dispatcher)
  on.exit(mirai::daemons(0))
  x <- big_vector()
  r <- bigvec_rate(function() mirai::mirai(x, x = x)[], x, cfg$big_reps)
  r$note <- dispatcher_note(cfg)
  r
}

# --- TLS: what encryption costs ----------------------------------------------

# One local daemon dialling a profile listening at `url`, connected.
url_daemon <- function(url, cfg, .compute = NULL) {
  mirai::daemons(url = url, dispatcher = cfg$dispatcher, .compute = .compute)
  mirai::launch_local(1L, .compute = .compute)
  stopifnot(identical(mirai::mirai(1L, .compute = .compute)[], 1L))
}

# Round trip over tls+tcp:// against tcp://, both on the loopback,
# interleaved in one process; the value is the ratio of the medians.
tlsrt_mirai <- function(cfg) {
  suppressMessages(library(mirai))
  # (daemons() with a url launches none: SPEC 3.1)
  url_daemon("tcp://127.0.0.1:0", cfg, "tcp")
  url_daemon("tls+tcp://127.0.0.1:0", cfg, "tls")
  on.exit({
    mirai::daemons(0, .compute = "tcp")
    mirai::daemons(0, .compute = "tls")
  })
  m <- interleaved_medians("tls", "tcp", cfg)
  note <- sprintf("interleaved medians: %.1f us tls+tcp, %.1f us tcp", m[1] * 1e6, m[2] * 1e6)
  result(m[1] / m[2], "x", note)
}

# A 100 MB vector there and back over tls+tcp:// (zero-config credentials).
tlsbig_mirai <- function(cfg) {
  suppressMessages(library(mirai))
  url_daemon("tls+tcp://127.0.0.1:0", cfg)
  on.exit(mirai::daemons(0))
  x <- big_vector()
  bigvec_rate(function() mirai::mirai(x, x = x)[], x, cfg$big_reps)
}

bigvec_psock <- function(cfg) {
  cl <- makePSOCKcluster(1L)
  on.exit(stopCluster(cl))
  x <- big_vector()
  bigvec_rate(function() clusterCall(cl, identity, x)[[1]], x, cfg$big_reps)
}

# The sockets' own limit: 100 MB echoed through a Unix socketpair by a
# thread (mirai:::socketpair_echo, which checks every echo), same formula.
bigvec_socketpair <- function(cfg) {
  suppressMessages(library(mirai))
  t <- mirai:::socketpair_echo(1e8, cfg$big_reps + 1L)[-1L] # first: warm-up
  result(100 / t, "MB/s", "Unix socketpair, echo thread")
}

# --- 5. draining a queue of 200,000 tasks, 2 workers (tasks/s) ------------

# The tasks are all queued before any daemon exists; the clock runs from
# launching 2 daemons (their start-up included) until every result is in.
drain_mirai <- function(cfg) {
  suppressMessages(library(mirai))
  mirai::daemons(url = mirai::local_url(), dispatcher = cfg$dispatcher)
  on.exit(mirai::daemons(0))
  n <- cfg$drain
  ms <- lapply(seq_len(n), function(i) mirai::mirai(1))
  t0 <- now()
  mirai::launch_local(2L)
  r <- mirai::collect_mirai(ms)
  el <- now() - t0
  check_values(r, rep(1, n))
  result(n / el, "tasks/s", paste(sprintf("%s tasks, daemon start-up included",
                                          format(n, big.mark = ",")),
                                  dispatcher_note(cfg)))
}

drain_clusterApplyLB <- function(cfg) {
  cl <- makePSOCKcluster(2L)
  on.exit(stopCluster(cl))
  n <- cfg$drain
  t0 <- now()
  r <- clusterApplyLB(cl, seq_len(n), ident)
  el <- now() - t0
  check_values(r, seq_len(n))
  result(n / el, "tasks/s", sprintf("%s tasks", format(n, big.mark = ",")))
}

# --- 6. host memory per queued task (bytes) --------------------------------

rss_bytes <- function() {
  gc()
  line <- grep("^VmRSS:", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) * 1024
}

# R heap in use: Ncells are 56 bytes each on 64-bit R, Vcells 8 bytes.
heap_bytes <- function() sum(gc()[, "used"] * c(56, 8))

memory_mirai <- function(cfg) {
  suppressMessages(library(mirai))
  # Listen without launching any daemon, so every task stays queued.
  mirai::daemons(url = mirai::local_url(), dispatcher = cfg$dispatcher)
  on.exit(mirai::daemons(0))
  n <- cfg$queued
  rss0 <- rss_bytes()
  heap0 <- heap_bytes()
  t0 <- now()
  ms <- lapply(seq_len(n), function(i) mirai::mirai(1))
  submit <- now() - t0
  rss1 <- rss_bytes()
  heap1 <- heap_bytes()
  stopifnot(length(ms) == n, mirai::unresolved(ms[[n]]))
  per <- (rss1 - rss0) / n
  heap <- (heap1 - heap0) / n
  note <- sprintf("%s tasks; R heap %.0f B + other %.0f B; submit %.1f us/task",
                  format(n, big.mark = ","), heap, per - heap, submit / n * 1e6)
  notes <- c(note, dispatcher_note(cfg))
  result(per, "B/task", paste(notes[nzchar(notes)], collapse = "; "))
}

# --- entry point -----------------------------------------------------------

main <- function(args) {
  stopifnot(length(args) == 5L)
  cfg <- settings(as.logical(args[3]))
  cfg$quick <- as.logical(args[3])
  cfg$dispatcher <- as.logical(args[4])
  fun <- get(paste0(args[1], "_", args[2]), mode = "function")
  res <- fun(cfg)
  saveRDS(res, args[5])
  cat(sprintf("%s/%s: %g %s %s\n", args[1], args[2], res$value, res$unit,
              res$note))
}

if (!interactive()) main(commandArgs(trailingOnly = TRUE))
