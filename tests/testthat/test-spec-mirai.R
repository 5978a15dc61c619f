# SPEC 1.1-1.4: mirai(), try_mirai(), the mirai object, evaluation on the
# daemon; Deviations 11.

test_that("mirai() and try_mirai() have exactly the specified formals", {
  expect_identical(names(formals(mirai)), c(".expr", "...", ".args", ".timeout", ".compute"))
  expect_identical(names(formals(try_mirai)), c(".expr", "...", ".args", ".timeout", ".compute"))
})

test_that("argument errors are simpleErrors attributed to the user's call", {
  # no daemons needed: validation happens before anything is sent
  e <- catch_cnd(mirai())
  expect_s3_class(e, "simpleError")
  expect_identical(conditionMessage(e), "missing expression, perhaps wrap in {}?")
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai())))

  e <- catch_cnd(mirai(.args = list(a = 1)))
  expect_identical(conditionMessage(e), "missing expression, perhaps wrap in {}?")
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai(.args = list(a = 1)))))

  e <- catch_cnd(try_mirai())
  expect_s3_class(e, "simpleError")
  expect_identical(conditionMessage(e), "missing expression, perhaps wrap in {}?")
  expect_identical(deparse(conditionCall(e)), deparse(quote(try_mirai())))

  msg_dots <- "all `...` arguments must be named, unless supplying an environment"
  e <- catch_cnd(mirai(1, 2))
  expect_s3_class(e, "simpleError")
  expect_identical(conditionMessage(e), msg_dots)
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai(1, 2))))
  e <- catch_cnd(mirai(1, a = 1, 2))
  expect_identical(conditionMessage(e), msg_dots)
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai(1, a = 1, 2))))
  # an unnamed environment mixed with named arguments is the same error
  env <- new.env()
  e <- catch_cnd(mirai(1, env, a = 1))
  expect_identical(conditionMessage(e), msg_dots)
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai(1, env, a = 1))))
  e <- catch_cnd(try_mirai(1, 2))
  expect_identical(conditionMessage(e), msg_dots)
  expect_identical(deparse(conditionCall(e)), deparse(quote(try_mirai(1, 2))))

  msg_args <- "all items in `.args` must be named, unless supplying an environment"
  e <- catch_cnd(mirai(1, .args = list(1)))
  expect_s3_class(e, "simpleError")
  expect_identical(conditionMessage(e), msg_args)
  expect_identical(deparse(conditionCall(e)), deparse(quote(mirai(1, .args = list(1)))))
  e <- catch_cnd(mirai(1, .args = list(a = 1, 2)))
  expect_identical(conditionMessage(e), msg_args)
  e <- catch_cnd(mirai(1, .args = c(1, 2)))
  expect_identical(conditionMessage(e), msg_args)
  e <- catch_cnd(try_mirai(1, .args = list(1)))
  expect_identical(conditionMessage(e), msg_args)
  expect_identical(deparse(conditionCall(e)), deparse(quote(try_mirai(1, .args = list(1)))))
})

test_that("the mirai object: class, id, visibility, printing, bindings", {
  spec_daemons(1)
  g <- new_gate()
  w <- gate_fun(g)
  expect_invisible(m <- mirai(w(), w = w))
  expect_identical(class(m), c("mirai", "recvAio"))
  expect_true(is.environment(m))
  expect_type(attr(m, "id"), "integer")
  expect_length(attr(m, "id"), 1L)
  expect_true(bindingIsActive("data", m))
  # pending
  expect_identical(capture.output(print(m)), "< mirai [] >")
  expect_identical(capture.output(print(m$data)), "'unresolved' logi NA")
  expect_s3_class(m$data, "unresolvedValue")
  expect_true(is.logical(unclass(m$data)) && is.na(unclass(m$data)))
  expect_true(unresolved(m))
  # print returns its argument invisibly
  out <- NULL
  capture.output(out <- withVisible(print(m)))
  expect_false(out$visible)
  expect_identical(out$value, m)
  open_gate(g)
  # the active binding updates without any call from us
  expect_true(wait_for(function() !unresolved(m$data), timeout = 20))
  expect_true(m$data)
  expect_identical(capture.output(print(m)), "< mirai [$data] >")
  expect_true(exists("value", envir = m, inherits = FALSE))
  expect_identical(.subset2(m, "value"), TRUE)
  expect_visible(m[])
  expect_identical(m[], TRUE)
})

test_that("mirai ids are strictly increasing across profiles and ephemeral tasks", {
  spec_daemons(1, dispatcher = FALSE, .compute = "spec-ids")
  ids <- integer()
  m1 <- mirai(1)
  m2 <- mirai(1, .compute = "spec-ids")
  m3 <- mirai(2)
  m4 <- mirai(2, .compute = "spec-ids")
  ids <- vapply(list(m1, m2, m3, m4), attr, integer(1), "id")
  expect_true(all(diff(ids) > 0L))
  expect_identical(collect_mirai(list(m1, m2, m3, m4)), list(1, 1, 2, 2))
})

test_that("`...` forms: named globals, environments, NULL values; .args locals", {
  spec_daemons(1)
  # all named: globals on the daemon, NULL values kept
  r <- mirai(
    list(
      a_glob = exists("a", envir = globalenv(), inherits = FALSE),
      z_null = exists("z", envir = globalenv(), inherits = FALSE) && is.null(z),
      a = a
    ),
    a = 1, z = NULL
  )[]
  expect_identical(r, list(a_glob = TRUE, z_null = TRUE, a = 1))

  # first unnamed element an environment: its objects (hidden names too)
  # become globals, minus .Random.seed; further unnamed elements ignored
  e <- new.env()
  assign("ea", 1L, envir = e)
  assign(".hidden", 2L, envir = e)
  assign(".Random.seed", 1:3, envir = e)
  r <- mirai(
    list(
      ea = get("ea", envir = globalenv(), inherits = FALSE),
      hidden = get(".hidden", envir = globalenv(), inherits = FALSE),
      rs_untouched = !identical(get0(".Random.seed", envir = globalenv()), 1:3)
    ),
    e, "ignored", 99
  )[]
  expect_identical(r, list(ea = 1L, hidden = 2L, rs_untouched = TRUE))

  # an unnamed non-environment first element errors
  expect_error(mirai(1, "x"), "all `...` arguments must be named", fixed = TRUE)

  # .args: locals of the evaluation environment, not globals
  r <- mirai(
    list(local = exists("b", envir = environment(), inherits = FALSE),
         global = exists("b", envir = globalenv(), inherits = FALSE),
         b = b),
    .args = list(b = 5)
  )[]
  expect_identical(r, list(local = TRUE, global = FALSE, b = 5))

  # .args environment: hidden names kept, and .Random.seed is not removed
  ea <- new.env()
  assign(".h", "h", envir = ea)
  assign(".Random.seed", 7:9, envir = ea)
  assign("v", "v", envir = ea)
  r <- mirai(
    list(h = .h, v = v, rs = get(".Random.seed", envir = environment(), inherits = FALSE)),
    .args = ea
  )[]
  expect_identical(r, list(h = "h", v = "v", rs = 7:9))

  # .args of length 0 (an empty environment included): no locals
  expect_identical(mirai(1L, .args = new.env())[], 1L)
  expect_identical(mirai(1L, .args = list())[], 1L)
  expect_identical(mirai(1L, .args = NULL)[], 1L)

  # a named atomic vector: one length-one local per element
  r <- mirai(list(m = m, n = n, prod = m * n), .args = c(m = 2L, n = 4L))[]
  expect_identical(r, list(m = 2L, n = 4L, prod = 8L))

  # the evaluation environment holds the .args objects (plus internal
  # entries only) and is enclosed by the global environment
  r <- mirai(
    list(encl = identical(parent.env(environment()), globalenv()),
         user = setdiff(ls(environment(), all.names = TRUE), c("._expr_.", "._globals_.", "._otel_."))),
    .args = list(p = 1, q = 2)
  )[]
  expect_identical(r, list(encl = TRUE, user = c("p", "q")))

  # base packages on the search path are found without ::
  expect_identical(mirai(median(c(1, 5, 9)))[], 5)
})

test_that("functions passed in `...` or `.args` keep their closures", {
  spec_daemons(1)
  make_adder <- function(k) {
    force(k)
    function(x) x + k
  }
  add3 <- make_adder(3)
  add4 <- make_adder(4)
  expect_identical(mirai(add3(1), add3 = add3)[], 4)
  expect_identical(mirai(add4(1), .args = list(add4 = add4))[], 5)
})

test_that("the expression is resolved from a symbol bound to a language object", {
  spec_daemons(1)
  expr <- quote(a + b)
  expect_identical(mirai(expr, a = 1, b = 2)[], 3)
  expect_identical(mirai(.expr = expr, a = 1, b = 2)[], 3)
  # pi is a symbol bound to a number: the symbol is sent and evaluated there
  expect_identical(mirai(pi)[], pi)
  # a symbol bound to a non-language value: the symbol itself is sent
  x <- 5
  expect_identical(mirai(x, x = 10)[], 10)
  # quote(1 + 1) is evaluated on the daemon and returns the call
  expect_identical(mirai(quote(1 + 1))[], quote(1 + 1))
  # an expression vector: every element evaluated, the last value returned
  ex <- expression(xx <- 20, xx + 1)
  expect_identical(mirai(ex)[], 21)
  # a quoted call as .expr with named ... (ragnar's inject() form)
  cl <- quote(u * v)
  expect_identical(do.call(mirai, list(cl, u = 3, v = 4))[], 12)
  # plumber2 form: .expr a call, an unnamed environment, named .args
  env <- new.env()
  assign("w", 6, envir = env)
  expect_identical(do.call(mirai, list(.expr = quote(w * 2), env))[], 12)
})

test_that("a nested missing expression resolves to the miraiError of the inner call", {
  spec_daemons(1)
  r <- mirai(mirai::mirai())[]
  expect_true(is_mirai_error(r))
  expect_identical(as.character(unclass(r))[1L], "Error in mirai::mirai(): missing expression, perhaps wrap in {}?")
})

test_that(".timeout resolves to errorValue 5 and the daemon goes on serving", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(1, dispatcher = disp)
    m <- mirai(Sys.sleep(3), .timeout = 100)
    expect_identical(unclass(m[]), 5L)
    expect_identical(class(m[]), c("errorValue", "try-error"))
    expect_identical(mirai("next")[], "next")
    expect_identical(status()$connections, 1L)
    daemons(0)
  }
})

test_that("try_mirai() behaves as mirai() without a memory budget", {
  spec_daemons(1)
  expect_invisible(m <- try_mirai(1 + 1))
  expect_true(is_mirai(m))
  expect_identical(m[], 2)
  daemons(0)
  # and with no daemons (ephemeral)
  expect_invisible(m <- try_mirai(3))
  expect_identical(m[], 3)
})

test_that("mirai() on an unset profile is not an error", {
  expect_false(daemons_set(.compute = "spec-never-set"))
  m <- mirai(mirai::on_daemon(), .compute = "spec-never-set")
  expect_true(m[])
})

test_that("the value is returned as is (native serialization)", {
  spec_daemons(1)
  obj <- list(a = 1:3, f = factor(c("x", "y")), d = as.Date("2024-01-02"),
              df = data.frame(x = 1:2, y = c("a", "b")), n = NULL, cplx = 1i)
  expect_identical(mirai(obj, obj = obj)[], obj)
  expect_null(mirai(NULL)[])
  expect_identical(mirai(invisible(7L))[], 7L)
})
