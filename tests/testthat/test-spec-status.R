# SPEC 3.3 status() / info(), 3.7 nextget(), 3.8 dispatcher counters and
# the memory gate, 1.2 try_mirai() under a budget; Deviations 6, 21, 23.

test_that("status() and info() for an unset profile", {
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  expect_visible(status())
  expect_null(info())
  expect_visible(info())
  expect_identical(status(.compute = "spec-st-none"), list(connections = 0L, daemons = 0L))
  expect_null(info(.compute = "spec-st-none"))
})

test_that("status() and info() without dispatcher", {
  spec_daemons(2, dispatcher = FALSE)
  s <- status()
  expect_identical(names(s)[1:2], c("connections", "daemons"))
  expect_identical(s$connections, 2L)
  expect_type(s$daemons, "character")
  expect_match(s$daemons, "^abstract://[0-9a-f]{24}$")
  expect_null(s$mirai)
  i <- info()
  expect_identical(i, c(connections = 2L, cumulative = NA_integer_, awaiting = NA_integer_,
                        executing = NA_integer_, completed = NA_integer_))
  expect_visible(info())
})

test_that("status() and info() with dispatcher: shapes, types and counters", {
  spec_daemons(1)
  s <- status()
  expect_identical(names(s)[1:4], c("connections", "daemons", "mirai", "memory"))
  expect_identical(s$connections, 1L)
  expect_match(s$daemons, "^abstract://[0-9a-f]{24}$")
  expect_identical(s$mirai, c(awaiting = 0L, executing = 0L, completed = 0L))
  expect_identical(s$memory, c(used = 0, peak = 0, capacity = NA_real_))
  expect_identical(info(), c(connections = 1L, cumulative = 1L, awaiting = 0L, executing = 0L, completed = 0L))

  g <- new_gate()
  w <- gate_fun(g)
  a <- mirai(w(), w = w)
  b <- mirai(1)
  c3 <- mirai(2)
  expect_true(wait_for(function() identical(status()$mirai, c(awaiting = 2L, executing = 1L, completed = 0L))))
  expect_identical(info()[c("awaiting", "executing", "completed")], c(awaiting = 2L, executing = 1L, completed = 0L))
  used <- status()$memory[["used"]]
  expect_true(used > 0)
  # exact bytes / 1e6, not rounded
  expect_true(used < 0.01)
  expect_equal(used * 1e6, round(used * 1e6), tolerance = 1e-9)
  stop_mirai(c3)
  expect_true(wait_for(function() identical(status()$mirai[["awaiting"]], 1L)))
  open_gate(g)
  call_mirai(list(a, b))
  expect_true(wait_for(function() identical(status()$mirai, c(awaiting = 0L, executing = 0L, completed = 3L))))
  m <- status()$memory
  expect_identical(m[["used"]], 0)
  # peak is the high-water mark
  expect_true(m[["peak"]] >= used)
  expect_true(is.na(m[["capacity"]]))
  # everywhere() tasks count as completed tasks
  everywhere(1)[]
  expect_true(wait_for(function() identical(status()$mirai[["completed"]], 4L)))
})

test_that("info()$cumulative counts every connection over the profile's life", {
  spec_daemons(1)
  launch_local(1)
  expect_true(wait_conn(2))
  expect_identical(info()[["cumulative"]], 2L)
  pids <- unlist(everywhere(Sys.getpid())[])
  tools::pskill(pids[1])
  expect_true(wait_conn(1))
  i <- info()
  expect_identical(i[["connections"]], 1L)
  expect_identical(i[["cumulative"]], 2L)
  expect_type(i, "integer")
})

test_that("memory capacity: MB value, NA when unbounded", {
  for (mem in list(5, 0.25)) {
    spec_daemons(url = local_url(), memory = mem)
    expect_identical(status()$memory[["capacity"]], mem)
    daemons(0)
  }
  for (mem in list(NULL, 0, -1, NA, Inf)) {
    spec_daemons(url = local_url(), memory = mem)
    expect_identical(status()$memory, c(used = 0, peak = 0, capacity = NA_real_))
    daemons(0)
  }
})

test_that("tasks handed straight to an idle daemon are never counted in memory", {
  spec_daemons(1)
  expect_identical(mirai(1)[], 1)
  expect_identical(mirai(2)[], 2)
  expect_identical(status()$memory[["peak"]], 0)
})

test_that("memory gate: admitted below the budget even if the task overshoots; NULL at or above", {
  spec_daemons(1, memory = 0.001, seed = 3L)
  g <- new_gate()
  w <- gate_fun(g)
  busy <- mirai(w(), w = w)
  expect_true(wait_for(function() identical(status()$mirai[["executing"]], 1L)))
  # queue empty: admitted although its payload exceeds the budget
  big <- mirai(length(x), .args = list(x = raw(5000)))
  expect_true(is_mirai(big))
  expect_true(status()$memory[["used"]] >= 0.001)
  stream <- nextget("stream")
  expect_invisible(r <- try_mirai(1))
  expect_null(r)
  # no task was created and no seed stream consumed
  expect_identical(nextget("stream"), stream)
  expect_identical(status()$mirai[["awaiting"]], 1L)
  open_gate(g)
  expect_identical(big[], 5000L)
  expect_true(wait_for(function() identical(status()$memory[["used"]], 0)))
  expect_true(status()$memory[["peak"]] >= 0.005)
  r <- try_mirai(2)
  expect_true(is_mirai(r))
  expect_identical(r[], 2)
})

test_that("memory gate: mirai() blocks at the budget and proceeds once the queue drains", {
  spec_daemons(1, memory = 0.001)
  busy <- mirai({Sys.sleep(1); "busy"})
  expect_true(wait_for(function() identical(status()$mirai[["executing"]], 1L)))
  big <- mirai(length(x), .args = list(x = raw(5000)))
  expect_true(status()$memory[["used"]] >= 0.001)
  # returns only after the busy task ended and the big one left the queue
  after <- mirai("after")
  expect_false(unresolved(busy))
  expect_identical(after[], "after")
  expect_identical(big[], 5000L)
})

test_that("degenerate budgets are unbounded: try_mirai() always gives a mirai", {
  spec_daemons(1, memory = 0)
  g <- new_gate()
  w <- gate_fun(g)
  busy <- mirai(w(), w = w)
  q <- lapply(1:3, function(i) try_mirai(length(x), .args = list(x = raw(5000))))
  expect_true(all(vapply(q, is_mirai, logical(1))))
  open_gate(g)
  expect_identical(collect_mirai(q), list(5000L, 5000L, 5000L))
})

test_that("try_mirai() without dispatcher ignores memory", {
  spec_daemons(1, dispatcher = FALSE, memory = 0.000001)
  g <- new_gate()
  w <- gate_fun(g)
  busy <- mirai(w(), w = w)
  q <- try_mirai(length(x), .args = list(x = raw(5000)))
  q2 <- try_mirai(2)
  expect_true(is_mirai(q2))
  expect_null(status()$memory)
  open_gate(g)
  expect_identical(q2[], 2)
})

test_that("nextget() items", {
  expect_null(nextget("n"))
  expect_null(nextget("url", .compute = "spec-ng-none"))
  spec_daemons(2)
  expect_identical(nextget("n"), 2L)
  expect_identical(nextget("url"), status()$daemons)
  expect_false(is.null(nextget("dispatcher")))
  expect_null(nextget("tls"))
  expect_identical(nextget("dots"), "")
  expect_identical(nextget("compute"), "default")
  expect_identical(nextget("sync"), FALSE)
  expect_null(nextget("seed"))
  expect_type(nextget("stream"), "integer")
  expect_length(nextget("stream"), 7L)
  expect_null(nextget("no-such-item"))
  daemons(0)
  expect_null(nextget("n"))

  spec_daemons(1, dispatcher = FALSE, cleanup = FALSE, .compute = "spec-ng")
  expect_identical(nextget("n", .compute = "spec-ng"), 1L)
  expect_null(nextget("dispatcher", .compute = "spec-ng"))
  expect_identical(nextget("dots", .compute = "spec-ng"), ",cleanup=FALSE")
  expect_identical(nextget("compute", .compute = "spec-ng"), "spec-ng")
  # the default is the literal "default" profile
  expect_null(nextget("n"))
  daemons(0, .compute = "spec-ng")

  spec_daemons(url = "tcp://127.0.0.1:0", seed = 9L, .compute = "spec-ng-url")
  expect_identical(nextget("n", .compute = "spec-ng-url"), 1L)
  expect_identical(nextget("seed", .compute = "spec-ng-url"), 9L)
  expect_match(nextget("url", .compute = "spec-ng-url"), "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  expect_false(grepl(":0$", nextget("url", .compute = "spec-ng-url")))
  spec_daemons(sync = TRUE, .compute = "spec-ng-sync")
  expect_identical(nextget("n", .compute = "spec-ng-sync"), 1L)
  expect_identical(nextget("sync", .compute = "spec-ng-sync"), TRUE)
  expect_null(nextget("dispatcher", .compute = "spec-ng-sync"))
})

test_that("[EXT] status() appends `refused` for listening profiles", {
  skip_if_upstream("[EXT] refused is this package's extension")
  spec_daemons(1)
  s <- status()
  expect_identical(names(s), c("connections", "daemons", "mirai", "memory", "refused"))
  expect_identical(s$refused, 0L)
  daemons(0)
  spec_daemons(1, dispatcher = FALSE)
  s <- status()
  expect_identical(names(s), c("connections", "daemons", "refused"))
  expect_identical(s$refused, 0L)
  daemons(0)
  expect_identical(status(), list(connections = 0L, daemons = 0L))
})
