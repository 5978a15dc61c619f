# Promises: as.promise()/is.promising() methods for mirai and mirai_map,
# settled from later's global loop when the result arrives (no polling).

skip_if_not_installed("promises")
skip_if_not_installed("later")

# Run later's global loop until `done()` holds or `timeout` seconds pass;
# run_now() returns as soon as a callback has run, so this waits on events.
run_loop_until <- function(done, timeout = 20) {
  deadline <- Sys.time() + timeout
  while (!isTRUE(done()) && Sys.time() < deadline) later::run_now(0.2)
  isTRUE(done())
}

# Follow a promise: an environment whose `state` becomes "fulfilled" (with
# `value`) or "rejected" (with `reason`).
follow <- function(p) {
  s <- new.env()
  s$state <- "pending"
  promises::then(
    p,
    onFulfilled = function(value) {
      s$state <- "fulfilled"
      s$value <- value
    },
    onRejected = function(reason) {
      s$state <- "rejected"
      s$reason <- reason
    }
  )
  s
}

settle <- function(p, timeout = 20) {
  s <- follow(p)
  expect_true(run_loop_until(function() s$state != "pending", timeout))
  s
}

expect_fulfilled <- function(p, value) {
  s <- settle(p)
  expect_identical(s$state, "fulfilled")
  expect_identical(s$value, value)
}

expect_rejected <- function(p, message) {
  s <- settle(p)
  expect_identical(s$state, "rejected")
  expect_s3_class(s$reason, "simpleError")
  expect_identical(conditionMessage(s$reason), message)
}

waiting <- function() .Call(mirai:::wrap__promise_settlers_waiting)

# Start each test with an empty global loop.
drain_loop <- function() while (!later::loop_empty()) later::run_now(0)

test_that("mirai does not load promises; the methods are registered once it is", {
  out <- system2(rscript(), c("--vanilla", "-e", shQuote(
    "library(mirai); cat(isNamespaceLoaded('promises'), isNamespaceLoaded('later'))"
  )), stdout = TRUE, env = sprintf("R_LIBS=%s", paste(.libPaths(), collapse = ":")))
  expect_identical(out, "FALSE FALSE")
  expect_true(is.function(getS3method("as.promise", "mirai", envir = asNamespace("promises"))))
  expect_true(is.function(getS3method("as.promise", "mirai_map", envir = asNamespace("promises"))))
})

test_that("a mirai is promising and has one cached promise", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  before <- waiting()
  m <- mirai({
    Sys.sleep(0.2)
    "value"
  })
  expect_true(promises::is.promising(m))
  expect_true(promises::is.promising(mirai_map(1:2, identity)))
  p <- promises::as.promise(m)
  expect_true(promises::is.promise(p))
  expect_s3_class(p, "promise")
  expect_identical(promises::as.promise(m), p)
  expect_identical(.subset2(m, "promise"), p)
  # asked twice, one settlement registered
  expect_identical(waiting(), before + 1L)
  expect_fulfilled(p, "value")
  expect_identical(waiting(), before)
  expect_identical(promises::as.promise(m), p)
})

test_that("then(), %...>%, catch() and finally() see the value", {
  skip_if_not_installed("promises", "1.3.0")
  library(promises)
  daemons(2)
  on.exit(daemons(0))
  drain_loop()
  expect_fulfilled(promises::then(mirai(x + 1, x = 1), function(v) v * 10), 20)
  expect_fulfilled(mirai(letters[1:3]) %...>% toupper(), c("A", "B", "C"))
  expect_fulfilled(mirai(stop("nope")) %...!% conditionMessage(), "Error: nope")
  expect_fulfilled(promises::catch(mirai(stop("bad")), function(e) "caught"), "caught")
  ran <- FALSE
  expect_fulfilled(promises::finally(mirai(7L), function() ran <<- TRUE), 7L)
  expect_true(ran)
  expect_fulfilled(promises::hybrid_then(mirai(3), on_success = function(v) v + 1), 4)
  expect_fulfilled(promises::promise_all(a = mirai(1), b = mirai("b")), list(a = 1, b = "b"))
  expect_fulfilled(
    promises::promise_map(1:3, function(i) mirai(i * 2L, i = i)),
    list(2L, 4L, 6L)
  )
})

test_that("error values reject with their text; an interrupt fulfils", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  expect_rejected(mirai(stop("boom")), "Error: boom")
  f <- function() stop("inner")
  expect_rejected(mirai(f(), f = f), "Error in f(): inner")
  expect_rejected(mirai(Sys.sleep(5), .timeout = 100), "5 | Timed out")
  s <- settle(mirai({
    tools::pskill(Sys.getpid(), tools::SIGINT)
    Sys.sleep(1)
    "not interrupted"
  }))
  expect_identical(s$state, "fulfilled")
  expect_true(is_mirai_interrupt(s$value))
})

test_that("cancelling and resetting daemons reject a pending promise", {
  daemons(1)
  on.exit(daemons(0))
  drain_loop()
  m <- mirai(Sys.sleep(30))
  s <- follow(m)
  stop_mirai(m)
  expect_true(run_loop_until(function() s$state != "pending"))
  expect_identical(conditionMessage(s$reason), "20 | Operation canceled")

  m2 <- mirai(Sys.sleep(30))
  s2 <- follow(m2)
  daemons(0)
  expect_true(run_loop_until(function() s2$state != "pending"))
  expect_identical(s2$state, "rejected")
  expect_identical(conditionMessage(s2$reason), "19 | Connection reset")
})

test_that("an already resolved mirai settles the same way", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  m <- mirai(list(1, "a"))
  m[]
  expect_fulfilled(m, list(1, "a"))
  e <- mirai(stop("late"))
  call_mirai(e)
  expect_rejected(e, "Error: late")
  daemons(0)
  daemons(sync = TRUE)
  expect_fulfilled(mirai(6 * 7), 42)
})

test_that("nothing is queued on later's loop while a mirai is pending", {
  daemons(1)
  on.exit(daemons(0))
  drain_loop()
  m <- mirai(Sys.sleep(30))
  s <- follow(m)
  expect_true(later::loop_empty())
  later::run_now(0.3)
  expect_identical(s$state, "pending")
  expect_true(later::loop_empty())
  stop_mirai(m)
  expect_true(wait_for(function() !later::loop_empty(), timeout = 10))
  expect_true(run_loop_until(function() s$state != "pending"))
})

test_that("it settles on later's global loop, not on a private one", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  m <- mirai("done")
  s <- follow(m)
  call_mirai(m)
  # the I/O thread queues the callback as it completes the mirai
  expect_true(wait_for(function() !later::loop_empty(), timeout = 10))
  later::with_temp_loop(later::run_now(0.3))
  expect_identical(s$state, "pending")
  expect_true(run_loop_until(function() s$state != "pending"))
  expect_identical(s$value, "done")
})

test_that("a promise still settles after its mirai is garbage collected", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  s <- local({
    m <- mirai({
      Sys.sleep(0.5)
      "kept"
    })
    follow(m)
  })
  invisible(gc())
  invisible(gc())
  expect_true(run_loop_until(function() s$state != "pending"))
  expect_identical(s$value, "kept")
})

test_that("an ephemeral mirai with a promise is kept alive until it settles", {
  daemons(0)
  drain_loop()
  s <- local(follow(mirai({
    Sys.sleep(0.5)
    Sys.getpid()
  })))
  invisible(gc())
  expect_true(run_loop_until(function() s$state != "pending", timeout = 30))
  expect_identical(s$state, "fulfilled")
  expect_type(s$value, "integer")
})

test_that("errors in user handlers reject the chain and the session carries on", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  p <- promises::then(mirai(1), function(v) stop("handler failed"))
  s <- settle(p)
  expect_identical(s$state, "rejected")
  expect_identical(conditionMessage(s$reason), "handler failed")
  p2 <- promises::catch(mirai(stop("x")), function(e) stop("rejection handler failed"))
  s2 <- settle(p2)
  expect_identical(conditionMessage(s2$reason), "rejection handler failed")
  expect_identical(mirai(2)[], 2)
  expect_fulfilled(mirai(3), 3)
})

test_that("many promises settle at once", {
  daemons(2)
  on.exit(daemons(0))
  drain_loop()
  before <- waiting()
  n <- 10000L
  ms <- lapply(seq_len(n), function(i) mirai(i, i = i))
  done <- 0L
  total <- 0
  for (m in ms) promises::then(m, function(v) {
    done <<- done + 1L
    total <<- total + v
  })
  expect_identical(waiting(), before + n)
  expect_true(run_loop_until(function() done == n, timeout = 120))
  expect_identical(total, as.numeric(sum(seq_len(n))))
  expect_identical(waiting(), before)
})

test_that("a mirai_map converts with promise_all", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  expect_fulfilled(mirai_map(1:3, function(x) x * 2L), list(2L, 4L, 6L))
  expect_fulfilled(mirai_map(c(a = 1, b = 2), function(x) x + 1), list(a = 2, b = 3))
  mp <- mirai_map(1:2, identity)
  expect_false(identical(promises::as.promise(mp), promises::as.promise(mp)))
  # the elements' promises are the cached ones
  expect_identical(.subset2(mp[[1L]], "promise"), promises::as.promise(mp[[1L]]))
  s <- settle(mirai_map(1:2, function(x) if (x == 2) stop("two") else x))
  expect_identical(s$state, "rejected")
  expect_match(conditionMessage(s$reason), "^Error.*: two$")
  partial <- mirai_map(list(a = 1, 2), identity)
  expect_error(
    promises::as.promise(partial),
    "promise_all expects promise arguments (or list) to be either all named or all unnamed",
    fixed = TRUE
  )
  partial[]
})

test_that("mirai_map(.promise =) registers handlers on every element", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  drain_loop()
  seen <- list()
  mp <- mirai_map(1:3, function(x) x * 10L, .promise = function(v) seen[[length(seen) + 1L]] <<- v)
  # registered before mirai_map() returned: each element has its promise
  expect_true(all(vapply(mp, function(m) !is.null(.subset2(m, "promise")), logical(1L))))
  expect_true(run_loop_until(function() length(seen) == 3L))
  expect_setequal(unlist(seen), c(10L, 20L, 30L))

  ok <- 0L
  failed <- character()
  mirai_map(1:2, function(x) if (x == 2) stop("no") else x, .promise = list(
    function(v) ok <<- ok + 1L,
    function(e) failed <<- c(failed, conditionMessage(e))
  ))
  expect_true(run_loop_until(function() ok + length(failed) == 2L))
  expect_identical(ok, 1L)
  expect_length(failed, 1L)
  expect_match(failed, "^Error.*: no$")
})
