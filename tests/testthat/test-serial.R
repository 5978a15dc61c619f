# Custom serialization (SPEC 5.3, 3.1 `serial`): serial_config() and
# register_serial(), applied through R's reference hooks on the host and on
# real daemons, in both directions.

# The session registry is put back as it was when the calling test ends.
local_registry <- function(frame = parent.frame()) {
  old <- mirai:::.state$serial
  spec_defer(assign("serial", old, envir = mirai:::.state), frame = frame)
  assign("serial", NULL, envir = mirai:::.state)
}

# An environment-based class (as R6 objects are): its functions record
# where they ran in the object itself, so a test sees which side used them.
myobj <- function(value) structure(list2env(list(value = value)), class = "myobj")
myobj_config <- function() serial_config(
  "myobj",
  gf(function(x) serialize(list(value = x$value, packed_on = Sys.getpid()), NULL)),
  gf(function(r) {
    fields <- unserialize(r)
    structure(list2env(c(fields, list(unpacked_on = Sys.getpid()))), class = "myobj")
  })
)

# nanoarrow arrays are external pointers; their IPC stream form is a raw
# vector (a data frame's array has the struct type the IPC format needs).
arrow_config <- function() serial_config(
  "nanoarrow_array",
  gf(function(x) {
    con <- rawConnection(raw(), "wb")
    on.exit(close(con))
    nanoarrow::write_nanoarrow(x, con)
    rawConnectionValue(con)
  }),
  gf(function(r) {
    s <- nanoarrow::read_nanoarrow(r)
    on.exit(s$release())
    s$get_next()
  })
)

test_that("serial_config() checks its arguments in order, with the exact messages", {
  msg <- function(expr) conditionMessage(catch_cnd(expr))
  expect_identical(msg(serial_config(1, identity, identity)), "`class` must be a character vector")
  # the class check comes before the length check
  expect_identical(msg(serial_config(1:2, identity, identity)), "`class` must be a character vector")
  expect_identical(msg(serial_config(c("a", "b"), identity, identity)),
                   "`class`, `sfunc` and `ufunc` must all be the same length")
  expect_identical(msg(serial_config("a", identity, list(identity, identity))),
                   "`class`, `sfunc` and `ufunc` must all be the same length")
  # the length check comes before the type checks
  expect_identical(msg(serial_config("a", 1:2, "x")),
                   "`class`, `sfunc` and `ufunc` must all be the same length")
  expect_identical(msg(serial_config("a", 1, identity)), "`sfunc` must be a function or list of functions")
  expect_identical(msg(serial_config("a", 1, 1)), "`sfunc` must be a function or list of functions")
  expect_identical(msg(serial_config("a", identity, "x")), "`ufunc` must be a function or list of functions")
  # list elements are not checked
  expect_silent(serial_config("a", list(1), list("x")))
})

test_that("serial_config() returns an unnamed list of the classes and two function lists", {
  cfg <- withVisible(serial_config("a", identity, rev))
  expect_true(cfg$visible)
  expect_identical(cfg$value, list("a", list(identity), list(rev)))
  expect_null(names(cfg$value))
  two <- serial_config(c("a", "b"), list(identity, rev), list(rev, identity))
  expect_identical(two, list(c("a", "b"), list(identity, rev), list(rev, identity)))
  expect_identical(serial_config(character(), list(), list()), list(character(), list(), list()))
})

test_that("register_serial() validates, returns invisible NULL and appends in order", {
  local_registry()
  expect_identical(conditionMessage(catch_cnd(register_serial(1, identity, identity))),
                   "`class` must be a character vector")
  expect_null(mirai:::.state$serial)
  r <- withVisible(register_serial("a", identity, rev))
  expect_false(r$visible)
  expect_null(r$value)
  register_serial(c("b", "a"), list(rev, rev), list(identity, identity))
  expect_identical(mirai:::.state$serial,
                   list(c("a", "b", "a"), list(identity, rev, rev), list(rev, identity, identity)))
})

test_that("daemons(serial = ) must be a serial_config() result; the profile is then not set", {
  for (bad in list("x", list("a", identity, identity), list("a", list(identity)), 1L)) {
    err <- catch_cnd(daemons(1, serial = bad))
    expect_match(conditionMessage(err), "`serial`", fixed = TRUE)
    expect_false(daemons_set())
  }
})

test_that("an environment-based class is packed and unpacked by its functions both ways", {
  spec_daemons(1, serial = myobj_config())
  host <- Sys.getpid()
  daemon_pid <- mirai(Sys.getpid())[]
  # host -> daemon: packed here, unpacked there
  got <- mirai(list(value = o$value, packed_on = o$packed_on, unpacked_on = o$unpacked_on,
                    class = class(o)), o = myobj(42))[]
  expect_identical(got, list(value = 42, packed_on = host, unpacked_on = daemon_pid, class = "myobj"))
  # daemon -> host: packed there, unpacked here
  back <- mirai(structure(list2env(list(value = "made on the daemon")), class = "myobj"))[]
  expect_s3_class(back, "myobj")
  expect_identical(back$value, "made on the daemon")
  expect_identical(back$packed_on, daemon_pid)
  expect_identical(back$unpacked_on, host)
  # nested anywhere in a payload and a result, each one by its hooks
  nested <- mirai(list(a = list(x[[1]], x$deep$o), n = 3L),
                  x = list(myobj(1), deep = list(o = myobj(2))))[]
  expect_identical(vapply(nested$a, function(o) o$value, numeric(1)), c(1, 2))
  expect_true(all(vapply(nested$a, function(o) o$unpacked_on == host, logical(1))))
  # a task without such objects is unaffected
  expect_identical(mirai(x + 1L, x = 1L)[], 2L)
})

test_that("a nanoarrow array goes to a daemon and back intact, nested inside lists", {
  skip_if_not_installed("nanoarrow")
  spec_daemons(1, serial = arrow_config())
  df <- data.frame(x = 1:3, y = c("a", "b", "c"))
  arr <- nanoarrow::as_nanoarrow_array(df)
  # host -> daemon: read there
  expect_identical(mirai(as.data.frame(a), a = arr)[], df)
  # daemon -> host, and nested on both paths
  res <- mirai({
    list(outer = list(inner = list(x$deep$a, nanoarrow::as_nanoarrow_array(data.frame(z = 4:5)))))
  }, x = list(deep = list(a = arr)))[]
  expect_s3_class(res$outer$inner[[1L]], "nanoarrow_array")
  expect_identical(as.data.frame(res$outer$inner[[1L]]), df)
  expect_identical(as.data.frame(res$outer$inner[[2L]]), data.frame(z = 4:5))
})

test_that("the first configured class an object inherits wins", {
  tagged <- function(tag) list(
    gf(eval(bquote(function(x) serialize(.(tag), NULL)))),
    gf(function(r) structure(list2env(list(via = unserialize(r))), class = "restored"))
  )
  a <- tagged("base")
  b <- tagged("sub")
  cfg <- serial_config(c("base", "sub"), list(a[[1]], b[[1]]), list(a[[2]], b[[2]]))
  spec_daemons(1, serial = cfg)
  # the object's own class order does not matter: configured order does
  obj <- structure(new.env(), class = c("sub", "base"))
  expect_identical(mirai(o$via, o = obj)[], "base")
  only_sub <- structure(new.env(), class = "sub")
  expect_identical(mirai(o$via, o = only_sub)[], "sub")
})

test_that("classed lists and vectors never trigger hooks, even when listed", {
  boom <- gf(function(x) stop("hook must not run"))
  spec_daemons(1, serial = serial_config(c("mylist", "myvec"), list(boom, boom), list(boom, boom)))
  l <- structure(list(1, "a"), class = "mylist")
  v <- structure(1:3, class = "myvec")
  expect_identical(mirai(list(l, v), l = l, v = v)[], list(l, v))
})

test_that("an sfunc not returning raw fails mirai() with the exact error; nothing is harmed", {
  cfg <- serial_config("badcls", gf(function(x) "not raw"), gf(function(r) NULL))
  spec_daemons(1, serial = cfg)
  obj <- structure(new.env(), class = "badcls")
  err <- catch_cnd(mirai(o, o = obj))
  expect_identical(conditionMessage(err),
                   "Serialization function for `badcls` did not return a raw vector")
  # and an sfunc that errors fails mirai() with its message
  cfg2 <- serial_config("errcls", gf(function(x) stop("cannot pack")), gf(function(r) NULL))
  spec_daemons(1, serial = cfg2)
  expect_match(conditionMessage(catch_cnd(mirai(o, o = structure(new.env(), class = "errcls")))),
               "cannot pack", fixed = TRUE)
  expect_identical(mirai(1 + 1)[], 2)
  expect_identical(status()$connections, 1L)
  expect_identical(status()$mirai[["awaiting"]], 0L)
})

test_that("an sfunc failing on the daemon's result: errorValue 19 and the daemon is gone", {
  cfg <- serial_config(
    "dies",
    gf(function(x) if (mirai::on_daemon()) "not raw" else serialize(NULL, NULL)),
    gf(function(r) NULL)
  )
  spec_daemons(1, serial = cfg)
  r <- mirai(structure(new.env(), class = "dies"))[]
  expect_true(is_error_value(r))
  expect_identical(as.integer(r), 19L)
  expect_true(wait_conn(0L))
})

test_that("without dispatcher the configuration is ignored", {
  boom <- gf(function(x) stop("hook must not run"))
  spec_daemons(1, dispatcher = FALSE, serial = serial_config("myobj", boom, boom))
  expect_identical(mirai(o$value, o = myobj(7))[], 7)
  back <- mirai(structure(list2env(list(value = 8)), class = "myobj"))[]
  expect_identical(back$value, 8)
  expect_null(back$unpacked_on)
})

test_that("register_serial() applies to later daemons() calls with serial = NULL only", {
  local_registry()
  cfg <- myobj_config()
  register_serial(cfg[[1]], cfg[[2]], cfg[[3]])
  spec_daemons(1)
  daemon_pid <- mirai(Sys.getpid())[]
  expect_identical(mirai(o$unpacked_on, o = myobj(1))[], daemon_pid)
  # an explicit configuration replaces the registry for that profile
  spec_daemons(1, serial = serial_config("other", identity, identity))
  expect_null(mirai(o$unpacked_on, o = myobj(1))[])
  # without dispatcher the registry is ignored too
  spec_daemons(1, dispatcher = FALSE)
  expect_null(mirai(o$unpacked_on, o = myobj(1))[])
})

test_that("ephemeral mirai ignore the registry", {
  local_registry()
  daemons(0)
  boom <- gf(function(x) stop("hook must not run"))
  register_serial("myobj", boom, boom)
  expect_identical(mirai(o$value, o = myobj(5), .timeout = 30000)[], 5)
})

test_that("daemons connecting later get the configuration before their first task", {
  spec_daemons(url = local_url(), serial = myobj_config())
  # queued before any daemon exists
  m <- mirai(list(o$value, o$unpacked_on), o = myobj(3))
  launch_local(1)
  expect_true(wait_conn(1L, timeout = 20))
  got <- m[]
  expect_identical(got[[1]], 3)
  expect_false(is.null(got[[2]]))
  # a second daemon joining later gets it too
  launch_local(1)
  expect_true(wait_conn(2L, timeout = 20))
  pids <- unlist(collect_mirai(everywhere(Sys.getpid(), .min = 2)))
  expect_length(unique(pids), 2L)
  r <- collect_mirai(everywhere(list(o$unpacked_on, Sys.getpid()), o = myobj(9), .min = 2))
  expect_true(all(vapply(r, function(x) identical(x[[1]], x[[2]]), logical(1))))
})

test_that("everywhere() and mirai_map() use the configuration", {
  spec_daemons(2, serial = myobj_config())
  # `...` objects become the daemons' globals, unpacked there
  done <- collect_mirai(everywhere(o$unpacked_on, o = myobj(11)))
  expect_length(unique(unlist(done)), 2L)
  back <- mirai(o)[]
  expect_identical(back$value, 11)
  expect_identical(back$unpacked_on, Sys.getpid())
  expect_false(identical(back$packed_on, Sys.getpid()))
  objs <- list(a = myobj(1), b = myobj(2))
  res <- mirai_map(objs, function(o) structure(list2env(list(value = o$value * 10)), class = "myobj"))[]
  expect_identical(names(res), c("a", "b"))
  expect_identical(vapply(res, function(o) o$value, numeric(1)), c(a = 10, b = 20))
  expect_true(all(vapply(res, function(o) identical(o$unpacked_on, Sys.getpid()), logical(1))))
})
