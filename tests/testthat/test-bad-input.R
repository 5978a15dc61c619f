# Bad input: each error message of the contract, and the session (and any
# daemons already set) keeps working afterwards.

# Check that the default profile's daemon still answers.
still_works <- function(pid) {
  expect_identical(status()$connections, 1L)
  expect_identical(mirai(Sys.getpid())[], pid)
}

test_that("mirai() argument errors leave the session working", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]

  expect_error(mirai(), "missing expression, perhaps wrap in {}?", fixed = TRUE)
  still_works(pid)
  expect_error(mirai(x + 1, 1), "all `...` arguments must be named, unless supplying an environment",
               fixed = TRUE)
  expect_error(mirai(x + 1, x = 1, 2), "all `...` arguments must be named, unless supplying an environment",
               fixed = TRUE)
  still_works(pid)
  expect_error(mirai(x + 1, .args = list(1)),
               "all items in `.args` must be named, unless supplying an environment", fixed = TRUE)
  expect_error(mirai(x + y, .args = list(x = 1, 2)),
               "all items in `.args` must be named, unless supplying an environment", fixed = TRUE)
  still_works(pid)
  expect_error(try_mirai(), "missing expression, perhaps wrap in {}?", fixed = TRUE)
  expect_error(everywhere(1, 2), "all `...` arguments must be named, unless supplying an environment",
               fixed = TRUE)
  expect_error(mirai(1, .timeout = "a"))
  still_works(pid)
})

test_that("daemons() argument errors leave existing daemons working", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  url <- status()$daemons

  # these are checked before the profile is touched
  expect_error(daemons(-1), "the number of daemons must be zero or greater", fixed = TRUE)
  still_works(pid)
  expect_error(daemons("tcp://127.0.0.1:0"), "`n` must be numeric, did you mean to provide `url`?",
               fixed = TRUE)
  still_works(pid)
  expect_error(daemons(url = 1), "`url` must be of type character, not double", fixed = TRUE)
  expect_error(daemons(url = TRUE), "`url` must be of type character, not logical", fixed = TRUE)
  still_works(pid)
  expect_identical(status()$daemons, url)
})

test_that("bad dispatcher or seed values are R's own errors after the profile is reset", {
  # existing daemons are reset first (SPEC 3.1), then the value is used
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_error(daemons(1, dispatcher = "yes"), "not interpretable as logical", fixed = TRUE)
  expect_false(daemons_set())
  daemons(1, dispatcher = FALSE)
  expect_error(daemons(1, dispatcher = NA), "missing value where TRUE/FALSE needed", fixed = TRUE)
  expect_false(daemons_set())
  daemons(1, dispatcher = FALSE)
  expect_error(suppressWarnings(daemons(1, seed = "a")), "seed")
  expect_false(daemons_set())
  # the session is unharmed: daemons can be set again and serve
  daemons(1, dispatcher = FALSE)
  expect_identical(mirai(1L + 1L)[], 2L)
})

test_that("invalid URLs error with the transport's message; other profiles keep working", {
  daemons(1, dispatcher = FALSE, .compute = "keep")
  on.exit({
    daemons(0, .compute = "keep")
    daemons(0)
  })
  pid <- mirai(Sys.getpid(), .compute = "keep")[]
  for (u in c("tcp://127.0.0.1", "foo://x", "no-scheme", "tcp://127.0.0.1:notaport", "tcp://[::1:0")) {
    # an existing profile is reset first, and stays unset after the error
    daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
    e <- tryCatch(daemons(url = u, dispatcher = FALSE), error = identity)
    expect_s3_class(e, "error")
    expect_match(conditionMessage(e), "^[0-9]+ \\| [A-Z][a-z ]+$")
    expect_false(daemons_set())
    expect_identical(mirai(Sys.getpid(), .compute = "keep")[], pid)
  }
  # an address that cannot be bound
  expect_error(daemons(url = "tcp://192.0.2.1:0", dispatcher = FALSE), "15 | Address invalid", fixed = TRUE)
  expect_false(daemons_set())
  expect_identical(status(.compute = "keep")$connections, 1L)
  expect_identical(mirai(Sys.getpid(), .compute = "keep")[], pid)
})

test_that("daemon settings in `...` are not validated: unknown names pass, character values are dropped", {
  daemons(1, dispatcher = FALSE, foo = 1, idletime = "a", cleanup = "yes", autoexit = "x", bar = TRUE)
  on.exit(daemons(0))
  expect_identical(nextget("dots"), ",foo=1,bar=TRUE")
  pid <- mirai(Sys.getpid())[]
  still_works(pid)
  expect_match(proc_cmdline(pid), "mirai::daemon(", fixed = TRUE)
  expect_match(proc_cmdline(pid), ",foo=1,bar=TRUE", fixed = TRUE)
  # launch_local() settings replace the stored ones, unknown ones included
  expect_identical(launch_local(1, bogus = TRUE, output = "no"), 1)
  expect_true(wait_conn(2))
  pids <- unlist(collect_mirai(list(mirai(Sys.getpid()), mirai(Sys.getpid()))))
  expect_true(pid %in% pids)
  other <- setdiff(pids, pid)
  expect_length(other, 1L)
  expect_match(proc_cmdline(other), ",bogus=TRUE", fixed = TRUE)
  expect_false(grepl("foo=1", proc_cmdline(other), fixed = TRUE))
  # daemon() itself ignores unknown arguments; a failed dial errors at once
  # with the transport's message
  expect_error(daemon(1), "url")
  t0 <- Sys.time()
  expect_error(daemon("tcp://127.0.0.1:1", maxtasks = -5, timerstart = 0, unknown = "x"),
               "6 | Connection refused", fixed = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 5)
  expect_false(on_daemon())
  still_works_2 <- unlist(collect_mirai(list(mirai(Sys.getpid()), mirai(Sys.getpid()))))
  expect_setequal(still_works_2, pids)
})

test_that("mirai_map() argument errors", {
  expect_false(daemons_set())
  # no daemons: a clear error pointing to daemons(), checked before `.f`
  expect_error(mirai_map(1:3, identity), "daemons(", fixed = TRUE)
  expect_error(mirai_map(1:3, 1), "No daemons set.", fixed = TRUE)
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  expect_error(mirai_map(1:3, 1), "`.f` must be of type function, not double", fixed = TRUE)
  expect_error(mirai_map(1:3, "sum"), "`.f` must be of type function, not character", fixed = TRUE)
  still_works(pid)
  # unnamed `.args` are not an error in a map: they are passed positionally
  expect_identical(mirai_map(1:3, function(x, y) x + y, .args = list(10L))[], list(11L, 12L, 13L))
  still_works(pid)
  expect_identical(mirai_map(1:2, function(x) x + 1L)[], list(2L, 3L))
})

test_that("require_daemons() errors name the profile", {
  expect_false(daemons_set())
  expect_error(require_daemons(), "No daemons set.", fixed = TRUE)
  expect_error(require_daemons(), "daemons(", fixed = TRUE)
  expect_error(require_daemons(.compute = "name"),
               "No daemons set for the 'name' compute profile.", fixed = TRUE)
  e <- tryCatch(require_daemons(), error = identity)
  expect_s3_class(e, "error")
  daemons(1, dispatcher = FALSE, .compute = "name")
  on.exit(daemons(0, .compute = "name"))
  expect_invisible(require_daemons(.compute = "name"))
  expect_true(require_daemons(.compute = "name"))
  expect_error(require_daemons(), "No daemons set.", fixed = TRUE)
})

test_that("launching without daemons, or for a sync profile, errors", {
  expect_false(daemons_set())
  expect_error(launch_local(1), "daemons must be set to use this function", fixed = TRUE)
  expect_error(launch_remote(1), "daemons must be set to use this function", fixed = TRUE)
  daemons(sync = TRUE, .compute = "syncp")
  on.exit(daemons(0, .compute = "syncp"))
  expect_error(launch_local(1, .compute = "syncp"),
               "daemons cannot be launched for synchronous compute profiles", fixed = TRUE)
  expect_error(launch_remote(1, .compute = "syncp"),
               "daemons cannot be launched for synchronous compute profiles", fixed = TRUE)
  # the sync profile still evaluates
  expect_identical(mirai(1 + 1, .compute = "syncp")[], 2)
})

test_that("everywhere() and race_mirai() need daemons", {
  expect_false(daemons_set())
  expect_error(everywhere(1), "No daemons set.", fixed = TRUE)
  expect_error(race_mirai(list(1)), "daemons must be set to use this function", fixed = TRUE)
  expect_error(with_daemons("nope", 1), "No daemons set for the 'nope' compute profile.", fixed = TRUE)
  f <- function() local_daemons("nope")
  expect_error(f(), "No daemons set for the 'nope' compute profile.", fixed = TRUE)
  # an ephemeral mirai still works afterwards
  expect_identical(mirai(1L)[], 1L)
})
