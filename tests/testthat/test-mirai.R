# mirai(): arguments, the mirai object, waiting, racing and cancelling.

test_that("`...` name = value pairs are placed in the daemon's global environment", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_identical(mirai(x + y, x = 2L, y = 3L)[], 5L)
  expect_true(mirai(exists("x", envir = globalenv(), inherits = FALSE), x = 1)[])
  # a function defined at the top level finds `...` objects as globals
  f <- function(z) z * k
  environment(f) <- globalenv()
  expect_identical(mirai(f(2), f = f, k = 21)[], 42)
})

test_that("a single environment in `...` passes all its objects", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  e <- new.env()
  e$a <- 40
  e$b <- 2
  e$sq <- function(v) v^2
  expect_identical(mirai(a + b, e)[], 42)
  expect_identical(mirai(sq(a), e)[], 1600)
  expect_true(mirai(exists("a", envir = globalenv(), inherits = FALSE), e)[])
})

test_that("`.args` (list or environment) go to the local evaluation environment", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_identical(mirai(a * b, .args = list(a = 6L, b = 7L))[], 42L)
  # local, not global
  expect_identical(
    mirai(c(exists("a", inherits = FALSE), exists("a", envir = globalenv(), inherits = FALSE)),
          .args = list(a = 1))[],
    c(TRUE, FALSE)
  )
  e <- new.env()
  e$u <- "hello"
  e$v <- "world"
  expect_identical(mirai(paste(u, v), .args = e)[], "hello world")
  # both together
  expect_identical(mirai(g + l, g = 1, .args = list(l = 2))[], 3)
})

test_that("functions passed in `...` and `.args` work on the daemon", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_identical(mirai(f(3), f = function(x) x * 2)[], 6)
  expect_identical(mirai(g(2), .args = list(g = function(x) x + 1))[], 3)
  # closures keep their enclosed data
  make_adder <- function(n) function(x) x + n
  expect_identical(mirai(add5(1), add5 = make_adder(5))[], 6)
})

test_that("nothing is captured implicitly from the calling environment", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  not_passed_123 <- 5
  m <- mirai(not_passed_123 + 1)
  expect_true(is_mirai_error(m[]))
  expect_match(m$data, "not_passed_123")
})

test_that("language objects and symbols bound to them are evaluated", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expr <- quote(a * b)
  expect_identical(mirai(.expr = expr, .args = list(a = 2, b = 21))[], 42)
  expect_identical(mirai(expr, a = 3, b = 4)[], 12)
  # .expr itself is the expression: a quote() call evaluates to the call
  expect_identical(mirai(.expr = quote(2 * 3))[], quote(2 * 3))
  block <- quote({
    v <- 1:10
    sum(v)
  })
  expect_identical(mirai(block)[], 55L)
  # a multi-statement expression wrapped in {}
  expect_identical(mirai({
    a <- 20
    a + 22
  })[], 42)
})

test_that("mirai() returns an invisible mirai with an integer id", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_invisible(m <- mirai(1))
  expect_s3_class(m, "mirai")
  expect_true(is_mirai(m))
  expect_false(is_mirai(1))
  id <- attr(m, "id")
  expect_type(id, "integer")
  expect_length(id, 1L)
  m2 <- mirai(2)
  expect_type(attr(m2, "id"), "integer")
  expect_false(identical(attr(m2, "id"), id))
  call_mirai(list(m, m2))
})

test_that("$data is unresolved, then resolves by itself without any call", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(0.5)
    "done"
  })
  d <- m$data
  expect_s3_class(d, "unresolvedValue")
  expect_true(is.na(d))
  expect_type(d, "logical")
  expect_true(unresolved(d))
  expect_output(print(d), "unresolved")
  expect_true(unresolved(m))
  # poll only `$data` / unresolved(): no waiting function is called
  deadline <- Sys.time() + 10
  while (unresolved(m) && Sys.time() < deadline) Sys.sleep(0.01)
  expect_identical(m$data, "done")
  expect_false(unresolved(m))
  expect_false(unresolved(m$data))

  m2 <- mirai(7L)
  deadline <- Sys.time() + 10
  while (unresolved(m2$data) && Sys.time() < deadline) Sys.sleep(0.01)
  expect_identical(m2$data, 7L)
})

test_that("m[] waits and returns the value; it is stable afterwards", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(0.2)
    list(a = 1, b = "x")
  })
  expect_identical(m[], list(a = 1, b = "x"))
  expect_identical(m[], list(a = 1, b = "x"))
  expect_identical(m$data, list(a = 1, b = "x"))
  # NULL values
  expect_null(mirai(NULL)[])
  # large objects
  big <- runif(1e6)
  expect_identical(mirai(rev(x), x = big)[], rev(big))
})

test_that("mirai objects print as < mirai [] > and < mirai [$data] >", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(1)
    1
  })
  expect_identical(capture.output(print(m)), "< mirai [] >")
  m[]
  expect_identical(capture.output(print(m)), "< mirai [$data] >")
})

test_that("mirai are read-only", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai(1)
  expect_error(m$data <- 2)
  expect_identical(m[], 1)
})

test_that("call_mirai() waits and returns its argument invisibly", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(0.2)
    "a"
  })
  expect_invisible(call_mirai(m))
  expect_false(unresolved(m))
  expect_identical(call_mirai(mirai("b"))$data, "b")
  ms <- list(mirai({
    Sys.sleep(0.3)
    1
  }), mirai(2))
  res <- call_mirai(ms)
  expect_identical(res, ms)
  expect_false(unresolved(ms))
  expect_identical(lapply(ms, function(x) x$data), list(1, 2))
})

test_that("collect_mirai() returns values for a mirai and a list of mirai", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_identical(collect_mirai(mirai(1 + 1)), 2)
  ms <- lapply(1:4, function(i) mirai(i * 10L, i = i))
  expect_identical(collect_mirai(ms), list(10L, 20L, 30L, 40L))
  named <- list(a = mirai("A"), b = mirai("B"))
  expect_identical(collect_mirai(named), list(a = "A", b = "B"))
})

test_that("unresolved() works on a mirai, a list and $data", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  slow <- mirai({
    Sys.sleep(0.8)
    1
  })
  fast <- mirai(2)
  fast[]
  expect_true(unresolved(slow))
  expect_false(unresolved(fast))
  expect_true(unresolved(list(fast, slow)))
  expect_true(unresolved(slow$data))
  slow[]
  expect_false(unresolved(list(fast, slow)))
  expect_false(unresolved(slow$data))
  expect_false(unresolved(42))
})

test_that("race_mirai() returns the index of the first resolved mirai", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  ms <- list(mirai({
    Sys.sleep(2)
    1
  }), mirai(2))
  expect_identical(race_mirai(ms), 2L)
  ms[[2]][]
  # immediately when one already is
  t0 <- Sys.time()
  expect_identical(race_mirai(ms), 2L)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 1)
  expect_identical(race_mirai(list()), 0L)
  call_mirai(ms)
})

test_that("race_mirai() errors without daemons", {
  expect_false(daemons_set())
  expect_error(race_mirai(list()), "daemons must be set to use this function", fixed = TRUE)
})

test_that("stop_mirai() without dispatcher resolves to 20 at once but returns FALSE", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(1)
    1
  })
  t0 <- Sys.time()
  # no dispatcher holds the task: nobody is told, so FALSE
  expect_false(stop_mirai(m))
  expect_false(unresolved(m))
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 0.9)
  expect_s3_class(m$data, "errorValue")
  expect_identical(unclass(m$data), 20L)
  expect_identical(capture.output(print(m$data)), "'errorValue' int 20 | Operation canceled")
  expect_false(stop_mirai(m))
  done <- mirai(3)
  expect_identical(done[], 3)
  expect_false(stop_mirai(done))
  expect_identical(done$data, 3)
  # a list
  ms <- list(mirai({
    Sys.sleep(1)
    1
  }), done)
  expect_identical(stop_mirai(ms), c(FALSE, FALSE))
  expect_identical(unclass(ms[[1]]$data), 20L)
  expect_identical(done$data, 3)
  expect_false(stop_mirai(NULL))
  # the daemon carries on serving (after running the tasks to completion)
  expect_identical(mirai("next")[], "next")
})

test_that("stop_mirai() with dispatcher cancels and returns TRUE, FALSE when already resolved", {
  daemons(1)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(5)
    1
  })
  t0 <- Sys.time()
  expect_true(stop_mirai(m))
  expect_identical(unclass(m$data), 20L)
  expect_false(stop_mirai(m))
  done <- mirai(3)
  expect_identical(done[], 3)
  expect_false(stop_mirai(done))
  ms <- list(mirai({
    Sys.sleep(5)
    1
  }), done)
  expect_identical(stop_mirai(ms), c(TRUE, FALSE))
  expect_identical(unclass(ms[[1]]$data), 20L)
  expect_identical(done$data, 3)
  # the running task was interrupted: the daemon serves the next one at once
  expect_identical(mirai("next")[], "next")
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 4.5)
})

test_that("on_daemon() is FALSE on the host and TRUE inside a mirai", {
  expect_false(on_daemon())
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_true(mirai(mirai::on_daemon())[])
})

test_that("without daemons each mirai runs in its own ephemeral process", {
  expect_false(daemons_set())
  m1 <- mirai(Sys.getpid())
  m2 <- mirai(list(pid = Sys.getpid(), on = mirai::on_daemon(), v = x + 1), x = 1)
  p1 <- m1[]
  r2 <- m2[]
  expect_type(p1, "integer")
  expect_false(p1 == Sys.getpid())
  expect_false(r2$pid == Sys.getpid())
  expect_false(p1 == r2$pid)
  expect_true(r2$on)
  expect_identical(r2$v, 2)
  # the processes exit after returning their result
  expect_true(wait_for(function() !pid_alive(p1) && !pid_alive(r2$pid), timeout = 10))
  # errors come back too
  expect_true(is_mirai_error(mirai(stop("eph"))[]))
  expect_identical(unclass(mirai(Sys.sleep(5), .timeout = 200)[]), 5L)
})

test_that("try_mirai() submits like mirai() without a memory budget", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- try_mirai(x + 1, x = 1)
  expect_s3_class(m, "mirai")
  expect_identical(m[], 2)
})

test_that(".timeout resolves to errorValue 5", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(1)
    1
  }, .timeout = 100)
  t0 <- Sys.time()
  v <- m[]
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 0.9)
  expect_true(is_error_value(v))
  expect_identical(unclass(v), 5L)
  # a task that finishes in time is unaffected
  expect_identical(mirai(42L, .timeout = 5000)[], 42L)
})

test_that("default daemons(2) (dispatcher argument left as TRUE) runs simple tasks", {
  daemons(2)
  on.exit(daemons(0))
  expect_identical(status()$connections, 2L)
  expect_identical(mirai(x + 1L, x = 1L)[], 2L)
  expect_identical(collect_mirai(lapply(1:4, function(i) mirai(i, i = i))), as.list(1:4))
  pids <- unlist(collect_mirai(lapply(1:6, function(i) mirai(Sys.getpid()))))
  expect_false(Sys.getpid() %in% pids)
  expect_true(is_mirai_error(mirai(stop("e"))[]))
})

test_that("values of all kinds round-trip", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  obj <- list(
    int = 1:3, dbl = c(1.5, NA, Inf), chr = c("a", NA, "\u00e9"), lgl = c(TRUE, NA),
    cplx = 1i, raw = as.raw(0:255), fac = factor(c("x", "y")),
    df = data.frame(a = 1:2, b = c("u", "v")),
    mat = matrix(1:4, 2), date = as.Date("2024-02-29"),
    attr = structure(1:2, class = "custom", note = "kept"),
    nested = list(list(list(1))), null = NULL
  )
  expect_identical(mirai(o, o = obj)[], obj)
  f <- mirai(function(x) x + 1)[]
  expect_identical(f(1), 2)
  e <- mirai({
    e <- new.env()
    e$v <- 9
    e
  })[]
  expect_identical(e$v, 9)
  big <- mirai(numeric(2e6) + 1)[]
  expect_length(big, 2e6)
  expect_identical(sum(big), 2e6)
})

test_that("an ephemeral mirai can be stopped", {
  expect_false(daemons_set())
  m <- mirai({
    Sys.sleep(1)
    1
  })
  # an ephemeral daemon has no dispatcher: FALSE, yet 20 at once
  expect_false(stop_mirai(m))
  expect_identical(unclass(m$data), 20L)
  expect_false(stop_mirai(m))
})

test_that("a resolved mirai holds its value in a plain binding, even one nobody reads", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai(21L * 2L)
  expect_true(bindingIsActive("data", m))
  dropped <- lapply(1:50, function(i) mirai(i, i = i))
  call_mirai(m)
  expect_identical(m$data, 42L)
  expect_false(bindingIsActive("data", m))
  expect_identical(.subset2(m, "data"), 42L)
  # mirai the session no longer refers to are collected at the next call
  # and their values read back correctly where still referenced
  expect_identical(unlist(collect_mirai(dropped)), 1:50)
  expect_false(any(vapply(dropped, function(d) bindingIsActive("data", d), logical(1L))))
})

test_that("large plain vectors come back exactly, of every atomic type", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  n <- 1e6 + 1 # odd, so 4-byte types do not fill whole 8-byte units
  x <- list(dbl = runif(n), int = sample.int(10L, n, TRUE), lgl = rep(c(TRUE, NA, FALSE), length.out = n),
            raw = as.raw(rep(0:255, length.out = 5e6 + 3)), cpl = complex(real = runif(n), imaginary = -1))
  for (v in x) {
    back <- mirai(v, v = v)[]
    expect_identical(back, v)
    back[1] <- back[2] # an ordinary R vector: modifiable, collectable
    expect_identical(back[1], v[2])
  }
  # with attributes, through ordinary serialization
  m <- matrix(runif(1e6), ncol = 10)
  expect_identical(mirai(m, m = m)[], m)
  rm(back)
  gc()
  expect_identical(mirai(sum(1:10))[], 55L)
})
