# SPEC 1.6: call_mirai(), collect_mirai(), unresolved(), race_mirai(),
# stop_mirai(); 1.8 on_daemon(); Deviations 3.

test_that("call_mirai() waits (recursively) and returns its input invisibly", {
  spec_daemons(2)
  m1 <- mirai(1)
  m2 <- mirai(2)
  m3 <- mirai(3)
  x <- list(a = m1, list(m2, list(m3)))
  expect_invisible(call_mirai(x))
  expect_identical(call_mirai(x), x)
  expect_false(unresolved(m1))
  expect_false(unresolved(m2))
  expect_false(unresolved(m3))
  m <- mirai("v")
  expect_identical(call_mirai(m)$data, "v")
  expect_invisible(call_mirai(m))
  # any other input is accepted and returned
  expect_identical(call_mirai(1), 1)
  expect_invisible(call_mirai(1))
  expect_null(call_mirai(NULL))
  expect_identical(call_mirai(list(1, "a")), list(1, "a"))
})

test_that("collect_mirai() returns values visibly, keeping names", {
  spec_daemons(1)
  m <- mirai(1 + 1)
  expect_visible(collect_mirai(m))
  expect_identical(collect_mirai(m), 2)
  x <- list(a = mirai("A"), b = mirai("B"), mirai("C"))
  expect_identical(collect_mirai(x), list(a = "A", b = "B", "C"))
  expect_identical(collect_mirai(list()), list())
  expect_identical(collect_mirai(stats::setNames(list(), character())), stats::setNames(list(), character()))
  expect_identical(m[], 2)
  expect_visible(m[])
  # options are ignored for a single mirai
  me <- mirai(stop("e"))
  expect_true(is_mirai_error(collect_mirai(me, ".stop")))
  expect_true(is_mirai_error(collect_mirai(me, c(".stop", ".flat"))))
})

test_that("collect_mirai() errors on anything that is not a mirai or a list of mirai", {
  spec_daemons(1)
  m <- mirai(1)
  for (bad in list(1, "a", NULL, list(m, 1), list(1))) {
    e <- catch_cnd(collect_mirai(bad))
    expect_false(is.null(e))
    expect_identical(conditionMessage(e), "object is not an Aio or list of Aios")
  }
})

test_that("unresolved() never waits and never errors", {
  spec_daemons(1)
  g <- new_gate()
  w <- gate_fun(g)
  m <- mirai(w(), w = w)
  done <- mirai("done")
  expect_true(unresolved(m))
  expect_true(unresolved(m$data))
  expect_true(unresolved(list(1, m)))
  expect_true(unresolved(list(m$data)))
  # nested lists are not looked into
  expect_false(unresolved(list(list(m))))
  for (x in list(1, NULL, "a", list(), NA, new.env())) expect_false(unresolved(x))
  open_gate(g)
  m[]
  done[]
  expect_false(unresolved(m))
  expect_false(unresolved(m$data))
  expect_false(unresolved(list(m, done)))
})

test_that("race_mirai() errors when unset and returns an index invisibly", {
  e <- catch_cnd(race_mirai(list()))
  expect_identical(conditionMessage(e), "daemons must be set to use this function")

  spec_daemons(2)
  expect_invisible(race_mirai(list()))
  expect_identical(race_mirai(list()), 0L)
  expect_identical(race_mirai(list(1, "a")), 0L)
  expect_identical(race_mirai(1), 0L)
  r <- mirai(1)
  r[]
  # not a list
  expect_identical(race_mirai(r), 0L)

  g <- new_gate()
  w <- gate_fun(g)
  slow <- mirai(w(), w = w)
  fast <- mirai("fast")
  fast[]
  # already resolved, first in list order, non-mirai skipped (index counts them)
  expect_identical(race_mirai(list(slow, 1, fast)), 3L)
  expect_identical(race_mirai(list(r, fast)), 1L)
  # waits until one resolves
  slow2 <- mirai(w(), w = w)
  open_gate(g)
  expect_true(race_mirai(list(slow, slow2)) %in% 1:2)
  expect_type(race_mirai(list(slow, slow2)), "integer")
})

test_that("race_mirai() detects mirai of another profile", {
  spec_daemons(1)
  spec_daemons(1, .compute = "spec-race-other")
  m <- mirai("other", .compute = "spec-race-other")
  idx <- race_mirai(list(m))
  expect_identical(idx, 1L)
  expect_identical(m[], "other")
})

test_that("stop_mirai() on non-mirai input returns FALSE invisibly", {
  expect_invisible(stop_mirai(NULL))
  expect_identical(stop_mirai(NULL), FALSE)
  expect_identical(stop_mirai(1), FALSE)
  expect_identical(stop_mirai("a"), FALSE)
  expect_identical(stop_mirai(list()), logical(0))
})

test_that("stop_mirai() with dispatcher: queued tasks removed, executing interrupted", {
  spec_daemons(1)
  g <- new_gate()
  w <- gate_fun(g)
  marker <- tempfile("never-run")
  busy <- mirai(w(), w = w)
  queued <- mirai(file.create(marker), marker = marker)
  # the busy task is executing, the other queued at the dispatcher
  expect_true(wait_for(function() identical(status()$mirai[["executing"]], 1L)))
  expect_invisible(stop_mirai(queued))
  expect_identical(unclass(queued$data), 20L)
  expect_identical(class(queued$data), c("errorValue", "try-error"))
  # stopping a resolved mirai changes nothing and returns FALSE
  expect_identical(stop_mirai(queued), FALSE)
  expect_identical(unclass(queued$data), 20L)
  # the executing task is interrupted; the daemon stays and serves the next
  expect_identical(stop_mirai(busy), TRUE)
  expect_identical(unclass(busy$data), 20L)
  after <- mirai("after")
  expect_identical(after[], "after")
  expect_identical(status()$connections, 1L)
  expect_false(file.exists(marker))
  expect_identical(stop_mirai(after), FALSE)
  expect_identical(after[], "after")
  open_gate(g)
})

test_that("stop_mirai() on a list gives a logical vector of the same length", {
  spec_daemons(1)
  g <- new_gate()
  w <- gate_fun(g)
  done <- mirai(1)
  done[]
  a <- mirai(w(), w = w)
  b <- mirai(w(), w = w)
  expect_true(wait_for(function() identical(status()$mirai[c("awaiting", "executing")], c(awaiting = 1L, executing = 1L))))
  r <- stop_mirai(list(a, b, done, "x"))
  expect_identical(r, c(TRUE, TRUE, FALSE, FALSE), info = deparse(r))
  expect_identical(unclass(a$data), 20L)
  expect_identical(unclass(b$data), 20L)
  expect_identical(done$data, 1)
  mp <- mirai_map(1:3, function(x) Sys.sleep(10))
  expect_invisible(stop_mirai(mp))
  expect_identical(vapply(mp, function(m) unclass(m$data), integer(1)), c(20L, 20L, 20L))
  open_gate(g)
  expect_identical(mirai(2)[], 2)
})

test_that("stop_mirai() without dispatcher returns FALSE yet resolves to 20 at once", {
  spec_daemons(1, dispatcher = FALSE)
  g <- new_gate()
  w <- gate_fun(g)
  m <- mirai(w(), w = w)
  expect_identical(stop_mirai(m), FALSE)
  expect_identical(unclass(m$data), 20L)
  # the daemon was not told: it runs the task to completion and serves on
  open_gate(g)
  expect_identical(mirai("next")[], "next")
  expect_identical(unclass(m$data), 20L)
})

test_that("a cancellation racing completion leaves the daemon serving", {
  spec_daemons(1)
  for (i in 1:20) {
    m <- mirai(i, i = i)
    stop_mirai(m)
  }
  expect_identical(mirai("still")[], "still")
  expect_identical(status()$connections, 1L)
})

test_that("on_daemon() is FALSE in the host and TRUE on daemons", {
  expect_false(on_daemon())
  spec_daemons(1)
  expect_true(mirai(mirai::on_daemon())[])
  daemons(0)
  # ephemeral daemon
  expect_true(mirai(mirai::on_daemon())[])
  expect_false(on_daemon())
})
