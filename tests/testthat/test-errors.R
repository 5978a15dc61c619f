# Error values: miraiError, miraiInterrupt and integer errorValues.

test_that("a top-level error or one without a call is 'Error: <msg>' with its attributes", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  e <- mirai(stop("boom"))[]
  expect_true(is_mirai_error(e))
  expect_true(is_error_value(e))
  expect_false(is_mirai_interrupt(e))
  expect_s3_class(e, c("miraiError", "errorValue", "try-error"), exact = TRUE)
  expect_identical(as.character(e), "Error: boom")
  expect_identical(attr(e, "message"), "boom")
  expect_identical(attr(e, "condition.class"), c("simpleError", "error", "condition"))
  # [QUIRK] signalled at the top level of the task, the call is the daemon's
  # own evaluation call: present, but not part of the text
  expect_true(is.call(conditionCall(e)))
  expect_identical(conditionCall(e), attr(e, "call"))
  expect_identical(names(attributes(e)), c("message", "call", "condition.class", "stack.trace", "class"))
  expect_identical(conditionMessage(e), "boom")
  expect_type(attr(e, "stack.trace"), "list")
  expect_identical(capture.output(print(e)), "'miraiError' chr Error: boom")
  expect_false(inherits(e, "condition"))

  # a NULL call: the `call` attribute is absent
  e2 <- mirai(stop("no call", call. = FALSE))[]
  expect_identical(as.character(e2), "Error: no call")
  expect_identical(capture.output(print(e2)), "'miraiError' chr Error: no call")
  expect_identical(names(attributes(e2)), c("message", "condition.class", "stack.trace", "class"))
  expect_null(conditionCall(e2))
  e3 <- mirai(f(), f = function() stop("no call either", call. = FALSE))[]
  expect_identical(as.character(e3), "Error: no call either")
  expect_false("call" %in% names(attributes(e3)))
})

test_that("an error in a call is 'Error in <call>: <msg>' with call and stack trace", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  e <- mirai({
    f <- function(x) stop("deep ", x)
    g <- function() f(2)
    g()
  })[]
  expect_true(is_mirai_error(e))
  expect_identical(as.character(e), "Error in f(2): deep 2")
  expect_identical(capture.output(print(e)), "'miraiError' chr Error in f(2): deep 2")
  expect_identical(attr(e, "call"), quote(f(2)))
  expect_identical(conditionCall(e), quote(f(2)))
  expect_identical(conditionMessage(e), "deep 2")
  st <- attr(e, "stack.trace")
  expect_type(st, "list")
  expect_true(all(vapply(st, is.language, logical(1L))))
  # innermost first, from the signalling call down to the first call in the
  # task expression
  expect_identical(st, list(quote(stop("deep ", x)), quote(f(2)), quote(g())))

  # errors raised by base functions
  e2 <- mirai(log(-1:1, base = "a"))[]
  expect_identical(
    as.character(e2),
    "Error in log(-1:1, base = \"a\"): non-numeric argument to mathematical function"
  )
})

test_that("`$`, .DollarNames, conditionMessage() and conditionCall() reach the fields", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  e <- mirai(h(1), h = function(x) stop("bad h"))[]
  expect_identical(e$message, "bad h")
  expect_identical(e$call, quote(h(1)))
  expect_identical(e$condition.class, c("simpleError", "error", "condition"))
  expect_type(e$stack.trace, "list")
  nms <- utils::.DollarNames(e, "")
  expect_true(all(c("message", "call", "condition.class", "stack.trace") %in% nms))
  expect_identical(utils::.DollarNames(e, "mess"), "message")
  # usable as a condition by tryCatch consumers
  expect_identical(conditionMessage(e), "bad h")
  expect_identical(conditionCall(e), quote(h(1)))
})

test_that("extra fields and the class of a custom condition are kept", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  e <- mirai(stop(structure(
    class = c("myError", "error", "condition"),
    list(message = "m", call = NULL, extra = 42, more = list(a = "b"))
  )))[]
  expect_true(is_mirai_error(e))
  expect_identical(as.character(e), "Error: m")
  expect_identical(e$extra, 42)
  expect_identical(e$more, list(a = "b"))
  expect_identical(attr(e, "extra"), 42)
  expect_identical(e$condition.class, c("myError", "error", "condition"))
  expect_identical(conditionMessage(e), "m")
  expect_true("extra" %in% utils::.DollarNames(e, ""))

  # rlang-style / errorCondition() conditions
  e2 <- mirai(stop(errorCondition("custom msg", class = "special", data = 1:3)))[]
  expect_identical(e2$condition.class, c("special", "error", "condition"))
  expect_identical(e2$data, 1:3)
  expect_identical(conditionMessage(e2), "custom msg")
})

test_that("a task that interrupts itself resolves to a miraiInterrupt; the daemon carries on", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  m <- mirai({
    tools::pskill(Sys.getpid(), tools::SIGINT)
    Sys.sleep(1)
    "not interrupted"
  })
  v <- m[]
  expect_true(is_mirai_interrupt(v))
  expect_true(is_error_value(v))
  expect_false(is_mirai_error(v))
  expect_s3_class(v, c("miraiInterrupt", "errorValue", "try-error"), exact = TRUE)
  expect_identical(as.character(v), "")
  expect_identical(capture.output(print(v)), "'miraiInterrupt' chr \"\"")
  # the same daemon still serves
  expect_identical(status()$connections, 1L)
  expect_identical(mirai(Sys.getpid())[], pid)
})

test_that("integer error values print with their message", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  v <- mirai({
    Sys.sleep(1)
    1
  }, .timeout = 50)[]
  expect_true(is_error_value(v))
  expect_false(is_mirai_error(v))
  expect_false(is_mirai_interrupt(v))
  expect_type(v, "integer")
  expect_s3_class(v, "errorValue")
  expect_identical(unclass(v), 5L)
  expect_identical(capture.output(print(v)), "'errorValue' int 5 | Timed out")
})

test_that("an unfinished mirai resolves to errorValue 19 when daemons are reset", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  started <- tempfile()
  m <- mirai({
    file.create(started)
    Sys.sleep(5)
    1
  }, started = started)
  expect_true(wait_for(function() file.exists(started)))
  daemons(0)
  expect_false(unresolved(m))
  v <- m$data
  expect_identical(unclass(v), 19L)
  expect_identical(capture.output(print(v)), "'errorValue' int 19 | Connection reset")
})

test_that("the validators reject ordinary values", {
  expect_false(is_error_value(5L))
  expect_false(is_mirai_error("Error: x"))
  expect_false(is_mirai_interrupt(""))
  expect_false(is_mirai(list()))
  expect_false(is_mirai_map(list()))
  expect_false(is_error_value(simpleError("x")))
})

test_that("an error value returned (not raised) by a task is just a value", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  v <- mirai(simpleError("returned"))[]
  expect_s3_class(v, "simpleError")
  expect_false(is_mirai_error(v))
  expect_identical(conditionMessage(v), "returned")
  tr <- mirai(try(stop("tried"), silent = TRUE))[]
  expect_s3_class(tr, "try-error")
  expect_false(is_error_value(tr))
})

test_that("R serialization through the Rust stream buffers round-trips objects exactly", {
  roundtrip <- function(x) .Call(mirai:::wrap__serial_roundtrip, x)
  objs <- list(
    1:10, seq_len(1e6), runif(1e5), c(a = "x", b = NA), list(1, "a", NULL, list(TRUE)),
    data.frame(a = 1:3, b = letters[1:3]), factor(c("u", "v")), as.raw(0:255),
    complex(real = 1, imaginary = -1), quote(f(x, y = 2)),
    structure(list(), class = "custom"), NA_character_, -Inf
  )
  for (o in objs) expect_identical(roundtrip(o), o)
  # a closure comes back with a copy of its enclosing environment
  k <- 1
  f <- function(x) x + k
  expect_identical(roundtrip(f)(1), 2)
  e <- new.env()
  e$v <- 42
  expect_identical(roundtrip(e)$v, 42)
})
