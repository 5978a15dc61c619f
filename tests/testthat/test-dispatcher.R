# The dispatcher (daemons(dispatcher = TRUE), the default): FIFO scheduling
# to free daemons, cancellation, backpressure, status, dynamic scaling,
# everywhere(), per-task random streams and faults, on real daemons.

# Wait until the profile's dispatcher reports `n` executing tasks.
wait_executing <- function(n, timeout = 10, .compute = NULL)
  wait_for(function() status(.compute = .compute)$mirai[["executing"]] == n, timeout)

test_that("tasks go first-in first-out to whichever daemon is free", {
  daemons(2)
  on.exit(daemons(0))
  expect_true(wait_conn(2))
  long <- mirai({
    Sys.sleep(2)
    Sys.getpid()
  })
  expect_true(wait_executing(1))
  # short tasks queued behind the long one: all run on the other daemon,
  # one after the other, in the order submitted
  shorts <- lapply(1:6, function(i) mirai({
    start <- Sys.time()
    Sys.sleep(0.1)
    list(pid = Sys.getpid(), start = start, end = Sys.time())
  }))
  res <- collect_mirai(shorts)
  long_pid <- long[]
  pids <- vapply(res, `[[`, integer(1L), "pid")
  expect_false(any(pids == long_pid))
  expect_length(unique(pids), 1L)
  starts <- vapply(res, function(r) as.numeric(r$start), numeric(1L))
  ends <- vapply(res, function(r) as.numeric(r$end), numeric(1L))
  expect_false(is.unsorted(starts))
  # one task at a time: each starts after the previous one ended
  expect_true(all(starts[-1L] >= ends[-length(ends)]))
})

test_that("round-robin without dispatcher really differs (control)", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_true(wait_conn(2))
  pids <- unlist(collect_mirai(lapply(1:4, function(i) mirai({
    Sys.sleep(0.1)
    Sys.getpid()
  }))))
  expect_length(unique(pids), 2L)
  expect_null(status()$mirai)
  expect_true(all(is.na(info()[3:5])))
})

test_that("stop_mirai removes a queued task, which never runs", {
  daemons(1)
  on.exit(daemons(0))
  f <- tempfile()
  a <- mirai({
    Sys.sleep(1)
    "a"
  })
  b <- mirai(writeLines("ran", f), f = f)
  expect_true(wait_executing(1))
  expect_identical(status()$mirai[["awaiting"]], 1L)
  expect_true(stop_mirai(b))
  expect_false(stop_mirai(b))
  expect_identical(unclass(b$data), 20L)
  expect_s3_class(b$data, "errorValue")
  expect_identical(status()$mirai[["awaiting"]], 0L)
  expect_identical(a[], "a")
  expect_identical(mirai("next")[], "next")
  expect_false(file.exists(f))
})

test_that("stop_mirai interrupts an executing task; its daemon serves on", {
  daemons(1)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  m <- mirai({
    Sys.sleep(30)
    "not interrupted"
  })
  expect_true(wait_executing(1))
  t0 <- Sys.time()
  expect_true(stop_mirai(m))
  expect_identical(unclass(m$data), 20L)
  # the same daemon is free again long before the sleep would end
  nxt <- mirai(Sys.getpid(), .timeout = 10000)
  expect_identical(nxt[], pid)
  expect_lt(elapsed(t0), 10)
  # an R-level busy loop is interrupted too
  m <- mirai(repeat i <- 1)
  expect_true(wait_executing(1))
  stop_mirai(m)
  expect_identical(mirai(Sys.getpid(), .timeout = 10000)[], pid)
  expect_identical(n_conn(), 1L)
  expect_identical(status()$mirai[["executing"]], 0L)
})

test_that(".timeout resolves to errorValue 5 and cancels the task on its daemon", {
  daemons(1)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  f <- tempfile()
  m <- mirai({
    Sys.sleep(30)
    writeLines("finished", f)
  }, f = f, .timeout = 300)
  expect_identical(unclass(m[]), 5L)
  t0 <- Sys.time()
  expect_identical(mirai(Sys.getpid(), .timeout = 10000)[], pid)
  expect_lt(elapsed(t0), 10)
  expect_false(file.exists(f))
})

test_that("mirai_map()[.stop] cancels the remaining elements", {
  daemons(1)
  on.exit(daemons(0))
  f <- tempfile()
  mp <- mirai_map(1:4, function(i, f) {
    if (i == 1L) stop("first fails")
    Sys.sleep(0.5)
    cat(i, "\n", file = f, append = TRUE)
    i
  }, .args = list(f = f))
  expect_error(mp[.stop], stop_index_text(1), fixed = TRUE)
  expect_error(mp[.stop], "first fails", fixed = TRUE)
  # the others were cancelled: at most the one already running completes
  expect_true(wait_for(function() status()$mirai[["executing"]] == 0 &&
                         status()$mirai[["awaiting"]] == 0))
  codes <- vapply(2:4, function(i) is_error_value(mp[[i]]$data), logical(1L))
  expect_gte(sum(codes), 2L)
  # the one daemon answers this only after whatever it was running
  expect_identical(mirai("synced")[], "synced")
  ran <- if (file.exists(f)) length(readLines(f)) else 0L
  expect_lte(ran, 1L)
})

test_that("a memory budget applies backpressure; try_mirai() returns NULL", {
  daemons(1, memory = 0.001) # 1,000 bytes
  on.exit(daemons(0))
  expect_identical(status()$memory[["capacity"]], 0.001)
  big <- runif(1000) # about 8 KB serialized
  blocker <- mirai({
    Sys.sleep(1.5)
    "done"
  })
  expect_true(wait_executing(1))
  first <- mirai(length(b), b = big) # an empty queue takes any one task
  mem <- status()$memory
  expect_gt(mem[["used"]], 0.001)
  expect_gte(mem[["peak"]], mem[["used"]])
  expect_null(try_mirai(length(b), b = big))
  expect_identical(status()$mirai[["awaiting"]], 1L)
  # mirai() waits until the budget has room: after the blocker finished and
  # the first task left the queue for the daemon
  second <- mirai(length(b), b = big)
  expect_false(unresolved(blocker))
  expect_identical(blocker$data, "done")
  expect_identical(first[], 1000L)
  expect_identical(second[], 1000L)
  expect_identical(status()$memory[["used"]], 0)
  # small tasks fit next to each other
  expect_false(is.null(try_mirai(1)))
})

test_that("cancelling queued tasks frees the memory budget", {
  daemons(1, memory = 0.001)
  on.exit(daemons(0))
  blocker <- mirai(Sys.sleep(30))
  expect_true(wait_executing(1))
  queued <- mirai(length(b), b = runif(1000))
  expect_null(try_mirai(1))
  stop_mirai(queued)
  expect_false(is.null(try_mirai(1)))
  stop_mirai(blocker)
})

test_that("mirai() waiting on the budget answers an interrupt", {
  skip_on_os("windows")
  host <- r_process(paste(
    "library(mirai)",
    "daemons(1, memory = 0.001)",
    "b <- mirai(Sys.sleep(60))",
    "q <- mirai(length(x), x = runif(1000))",
    "cat('WAITING\\n')",
    "r <- tryCatch(mirai(length(x), x = runif(1000)), interrupt = function(e) 'interrupted')",
    "cat('RESULT', r, '\\n')",
    "daemons(0)",
    sep = "\n"
  ))
  on.exit(kill_process(host))
  lines <- read_lines_until(host, function(l) any(l == "WAITING"))
  expect_true("WAITING" %in% lines)
  Sys.sleep(0.5)
  expect_true(host$is_alive())
  host$interrupt()
  lines <- read_lines_until(host, function(l) any(grepl("^RESULT", l)))
  expect_true(any(grepl("RESULT interrupted", lines, fixed = TRUE)))
})

test_that("degenerate memory values mean unbounded; bad ones error", {
  for (mem in list(NULL, 0, -5, NA, Inf)) {
    daemons(1, memory = mem)
    expect_true(is.na(status()$memory[["capacity"]]))
    daemons(0)
  }
  expect_error(daemons(1, memory = "a lot"), "`memory`")
  expect_error(daemons(1, memory = c(1, 2)), "`memory`")
})

test_that("status() and info() count tasks with dispatcher", {
  daemons(2)
  on.exit(daemons(0))
  expect_true(wait_conn(2))
  s <- status()
  expect_named(s, c("connections", "daemons", "mirai", "memory", "refused"))
  expect_identical(s$connections, 2L)
  expect_named(s$mirai, c("awaiting", "executing", "completed"))
  expect_named(s$memory, c("used", "peak", "capacity"))
  collect_mirai(lapply(1:5, function(i) mirai(i)))
  i <- info()
  expect_named(i, c("connections", "cumulative", "awaiting", "executing", "completed"))
  expect_type(i, "integer")
  expect_identical(i[["connections"]], 2L)
  expect_identical(i[["cumulative"]], 2L)
  expect_identical(i[["awaiting"]], 0L)
  expect_identical(i[["executing"]], 0L)
  expect_identical(i[["completed"]], 5L)
  ms <- lapply(1:4, function(i) mirai(Sys.sleep(1)))
  expect_true(wait_executing(2))
  i <- info()
  expect_identical(i[["executing"]], 2L)
  expect_identical(i[["awaiting"]], 2L)
  stop_mirai(ms)
  expect_true(wait_for(function() info()[["executing"]] == 0L))
  expect_identical(info()[["completed"]], 9L)
})

test_that("daemons connecting at any time take queued work at once", {
  daemons(url = local_url())
  on.exit(daemons(0))
  ms <- lapply(1:6, function(i) mirai({
    Sys.sleep(0.2)
    Sys.getpid()
  }))
  expect_true(wait_for(function() identical(status()$mirai[["awaiting"]], 6L)))
  launch_local(2)
  pids <- unlist(collect_mirai(ms))
  expect_length(unique(pids), 2L)
  expect_identical(info()[["cumulative"]], 2L)
  # a third daemon joins a running profile
  launch_local(1)
  expect_true(wait_conn(3))
  pids <- unlist(collect_mirai(lapply(1:9, function(i) mirai({
    Sys.sleep(0.3)
    Sys.getpid()
  }))))
  expect_length(unique(pids), 3L)
})

test_that("daemons leaving only shrink capacity", {
  daemons(url = local_url())
  on.exit(daemons(0))
  launch_local(1)
  launch_local(1, maxtasks = 2)
  expect_true(wait_conn(2))
  # tasks sent to the daemon at its task limit go elsewhere, none is lost
  res <- collect_mirai(lapply(1:10, function(i) mirai({
    Sys.sleep(0.05)
    i
  }, i = i)))
  expect_identical(unlist(res), 1:10)
  expect_true(wait_conn(1))
  expect_identical(mirai("still here")[], "still here")
})

test_that("everywhere() reaches daemons connecting later; .min sizes the group", {
  daemons(url = local_url())
  on.exit(daemons(0))
  launch_local(1)
  expect_true(wait_conn(1))
  everywhere(marker <<- "set", .min = 1)
  launch_local(1)
  expect_true(wait_conn(2))
  res <- collect_mirai(lapply(1:4, function(i) mirai({
    Sys.sleep(0.3)
    list(Sys.getpid(), marker)
  })))
  expect_length(unique(vapply(res, `[[`, integer(1L), 1L)), 2L)
  expect_true(all(vapply(res, `[[`, character(1L), 2L) == "set"))
  # .min = 3 with 2 connected: returns at once; its 3 tasks go to 3
  # distinct daemons, the third as soon as it connects
  launch_local(1)
  r <- everywhere(Sys.getpid(), .min = 3)
  expect_s3_class(r, "mirai_map")
  expect_length(r, 3L)
  pids <- unlist(collect_mirai(r))
  expect_length(unique(pids), 3L)
})

test_that("an integer seed gives the same results whatever the number of daemons", {
  draw <- function(n) {
    daemons(n, seed = 1234)
    on.exit(daemons(0))
    unlist(collect_mirai(lapply(1:8, function(i) mirai(runif(2)))))
  }
  one <- draw(1)
  three <- draw(3)
  expect_identical(one, three)
  expect_length(unique(one), 16L)
  expect_identical(draw(1), one)
})

test_that("a daemon dying mid-task: 19 at once, the queue moves to the others", {
  daemons(2)
  on.exit(daemons(0))
  expect_true(wait_conn(2))
  f <- tempfile()
  victim_task <- mirai({
    writeLines(as.character(Sys.getpid()), f)
    Sys.sleep(30)
  }, f = f)
  expect_true(wait_for(function() file.exists(f) && length(readLines(f, warn = FALSE)) == 1L))
  victim <- as.integer(readLines(f))
  blocker <- mirai(Sys.sleep(0.5))
  queued <- lapply(1:5, function(i) mirai(Sys.getpid()))
  t0 <- Sys.time()
  tools::pskill(victim, tools::SIGKILL)
  expect_true(wait_for(function() !unresolved(victim_task), timeout = 5))
  expect_lt(elapsed(t0), 5)
  expect_identical(unclass(victim_task$data), 19L)
  pids <- unlist(collect_mirai(queued))
  expect_false(any(pids == victim))
  expect_identical(blocker[], NULL)
})

test_that("daemons(0) with tasks queued and executing: all 19, no daemon survives", {
  daemons(2)
  pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai({
    Sys.sleep(0.2)
    Sys.getpid()
  })))))
  expect_length(pids, 2L)
  running <- lapply(1:2, function(i) mirai(Sys.sleep(30)))
  queued <- lapply(1:3, function(i) mirai(1))
  expect_true(wait_executing(2))
  daemons(0)
  codes <- vapply(c(running, queued), function(m) unclass(m$data), integer(1L))
  expect_identical(codes, rep(19L, 5L))
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 5))
})
