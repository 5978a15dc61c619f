# future.mirai (CRAN) as a future backend on this mirai (SPEC 7): it calls
# daemons(), status(), mirai(future:::evalFuture(data), data = data),
# unresolved(), call_mirai() and stop_mirai() and must work unchanged.

skip_if_not_installed("future")
skip_if_not_installed("future.mirai")

test_that("mirai_multisession runs futures on daemons; nbrOfWorkers() reflects them", {
  future::plan(future.mirai::mirai_multisession, workers = 2)
  on.exit({ future::plan(future::sequential); daemons(0) })
  expect_identical(future::nbrOfWorkers(), 2L)
  expect_identical(status()$connections, 2L)

  offset <- 40
  fs <- lapply(1:4, function(i) future::future(c(pid = Sys.getpid(), v = i + offset)))
  vs <- lapply(fs, future::value)
  expect_identical(vapply(vs, function(v) v[["v"]], 0), 41:44 + 0)
  pids <- vapply(vs, function(v) v[["pid"]], 0)
  expect_false(any(pids == Sys.getpid()))

  # resolved() turns TRUE by itself and the value is stable
  f <- future::future(Sys.getpid())
  expect_true(future::value(f) != Sys.getpid())
  expect_true(future::resolved(f))
  # output and conditions are relayed as future does with any backend
  f <- future::future({ message("hello from a daemon"); 7L })
  expect_message(v <- future::value(f), "hello from a daemon")
  expect_identical(v, 7L)
  f <- future::future({ warning("careful"); 8L })
  expect_warning(v <- future::value(f), "careful")
  expect_identical(v, 8L)
})

test_that("errors in a future are raised by value() with their message", {
  future::plan(future.mirai::mirai_multisession, workers = 1)
  on.exit({ future::plan(future::sequential); daemons(0) })
  f <- future::future(stop("boom in a future"))
  err <- tryCatch(future::value(f), error = function(e) e)
  expect_s3_class(err, "error")
  expect_identical(conditionMessage(err), "boom in a future")
  # the worker carries on
  expect_identical(future::value(future::future(1 + 1)), 2)
})

test_that("a worker killed mid-future gives a FutureError and later futures still run", {
  future::plan(future.mirai::mirai_multisession, workers = 2)
  on.exit({ future::plan(future::sequential); daemons(0) })
  f <- future::future(tools::pskill(Sys.getpid(), tools::SIGKILL))
  err <- tryCatch(future::value(f), error = function(e) e)
  expect_s3_class(err, "FutureError")
  # the other daemon still serves futures
  expect_identical(future::value(future::future(3 * 3)), 9)
})

test_that("mirai_cluster uses the daemons the user set", {
  daemons(2, dispatcher = TRUE)
  future::plan(future.mirai::mirai_cluster)
  on.exit({ future::plan(future::sequential); daemons(0) })
  expect_identical(future::nbrOfWorkers(), 2L)
  fs <- lapply(1:3, function(i) future::future(i^2))
  expect_identical(vapply(fs, future::value, 0), c(1, 4, 9))
  # a cancelled (interrupted) future: future.mirai maps 20 to an interrupt
  skip_if_not(exists("cancel", envir = asNamespace("future")), "future has no cancel()")
  f <- future::future(Sys.sleep(30))
  future::cancel(f)
  err <- tryCatch(future::value(f), error = function(e) e)
  expect_s3_class(err, "FutureError")
  expect_identical(future::value(future::future(5L)), 5L)
})
