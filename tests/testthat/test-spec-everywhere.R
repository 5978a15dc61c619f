# SPEC 1.7: everywhere(); Deviations 1.

test_that("everywhere() requires daemons and validates like mirai()", {
  expect_error(everywhere(1), "No daemons set.")
  spec_daemons(1)
  e <- catch_cnd(everywhere(1, 2))
  expect_identical(conditionMessage(e), "all `...` arguments must be named, unless supplying an environment")
  e <- catch_cnd(everywhere(1, .args = list(2)))
  expect_identical(conditionMessage(e), "all items in `.args` must be named, unless supplying an environment")
  e <- catch_cnd(everywhere())
  expect_identical(conditionMessage(e), "missing expression, perhaps wrap in {}?")
})

test_that("with dispatcher: max(.min, connections) tasks to distinct daemons, returned invisibly", {
  spec_daemons(2)
  expect_invisible(ew <- everywhere(Sys.getpid()))
  expect_identical(class(ew), "mirai_map")
  expect_null(names(ew))
  expect_length(ew, 2L)
  pids <- unlist(ew[])
  expect_length(unique(pids), 2L)
  for (i in 1:3) expect_length(unique(unlist(everywhere(Sys.getpid())[])), 2L)
  ew1 <- everywhere(Sys.getpid(), .min = 1)
  expect_length(ew1, 2L)
  expect_length(unique(unlist(ew1[])), 2L)
})

test_that("with dispatcher: .min above the connections queues a group that later tasks wait behind", {
  spec_daemons(2)
  ew <- everywhere(Sys.getpid(), .min = 3)
  expect_length(ew, 3L)
  after <- mirai("after")
  # two of the group run on the two daemons; the third waits for a new one,
  # and the task submitted after everywhere() waits behind the group
  expect_true(wait_for(function() sum(!vapply(ew, unresolved, logical(1))) == 2L))
  expect_false(wait_for(function() !unresolved(after), timeout = 1))
  launch_local(1)
  expect_identical(after[], "after")
  pids <- unlist(ew[])
  expect_length(unique(pids), 3L)
})

test_that("with dispatcher: never blocks with nobody connected; the first daemon runs it", {
  spec_daemons(url = local_url())
  expect_invisible(ew <- everywhere(mirai::on_daemon()))
  expect_length(ew, 1L)
  ew3 <- everywhere("m", .min = 3)
  expect_length(ew3, 3L)
  expect_true(unresolved(ew))
  launch_local(3)
  expect_identical(ew[], list(TRUE))
  expect_identical(ew3[], list("m", "m", "m"))
})

test_that("without dispatcher: max(connections, n) tasks; .min ignored", {
  spec_daemons(2, dispatcher = FALSE)
  ew <- everywhere(1)
  expect_length(ew, 2L)
  expect_identical(class(ew), "mirai_map")
  expect_length(everywhere(1, .min = 5), 2L)
  expect_identical(ew[], list(1, 1))
  daemons(0)
  # url-only, nobody connected: n is 1
  spec_daemons(url = local_url(), dispatcher = FALSE)
  expect_invisible(ew <- everywhere(2))
  expect_length(ew, 1L)
  launch_local(1)
  expect_identical(ew[], list(2))
})

test_that("state created by everywhere() persists whatever the cleanup setting", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(2, dispatcher = disp)
    everywhere({
      ev_var <<- 42
      library(tools)
      options(spec_ev_opt = "set")
    }, ev_glob = "g")[]
    r <- collect_mirai(lapply(1:4, function(i) mirai(
      list(ev_var, ev_glob, "package:tools" %in% search(), getOption("spec_ev_opt"))
    )))
    for (x in r) expect_identical(x, list(42, "g", TRUE, "set"))
    daemons(0)
  }
})

test_that("everywhere({}, a = 1) exports `a`", {
  spec_daemons(1)
  everywhere({}, a = 1)[]
  expect_identical(mirai(a)[], 1)
  expect_identical(mirai(a)[], 1)
})

test_that("everywhere() consumes no seed stream", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(1, dispatcher = disp, seed = 11L)
    s0 <- s0_seeded(11L)
    expect_identical(nextget("stream"), s0)
    everywhere(runif(1))[]
    expect_identical(nextget("stream"), s0)
    expect_identical(mirai(.Random.seed)[], s0)
    expect_identical(mirai(.Random.seed)[], nrs(s0, 1))
    daemons(0)
  }
})

test_that("sync mode: one task", {
  spec_daemons(sync = TRUE)
  ew <- everywhere(s_var <<- 5)
  expect_length(ew, 1L)
  expect_identical(mirai(s_var)[], 5)
})

test_that("[EXT] with dispatcher, daemons connecting later also evaluate everywhere()", {
  skip_if_upstream("[EXT] upstream does not replay everywhere() to later daemons")
  spec_daemons(1)
  ew <- everywhere(late_var <<- "set")
  expect_length(ew, 1L)
  ew[]
  launch_local(1)
  expect_true(wait_conn(2))
  # two tasks held on distinct daemons by a gate, each reporting the variable
  g <- new_gate()
  w <- gate_fun(g)
  ms <- lapply(1:2, function(i) mirai(list(Sys.getpid(), exists("late_var"), w()), w = w))
  expect_true(wait_for(function() identical(status()$mirai[["executing"]], 2L)))
  open_gate(g)
  r <- collect_mirai(ms)
  expect_length(unique(vapply(r, `[[`, numeric(1), 1L)), 2L)
  expect_identical(vapply(r, `[[`, logical(1), 2L), c(TRUE, TRUE))
  # the replays do not appear in the task counts
  expect_identical(status()$mirai, c(awaiting = 0L, executing = 0L, completed = 3L))
  expect_identical(info()[["completed"]], 3L)
})
