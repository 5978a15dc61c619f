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

  expect_error(daemons(-1), "the number of daemons must be zero or greater", fixed = TRUE)
  still_works(pid)
  expect_error(daemons("tcp://127.0.0.1:0"), "`n` must be numeric, did you mean to provide `url`?",
               fixed = TRUE)
  still_works(pid)
  expect_error(daemons(url = 1), "`url` must be of type character, not double", fixed = TRUE)
  expect_error(daemons(url = TRUE), "`url` must be of type character, not logical", fixed = TRUE)
  still_works(pid)
  expect_error(daemons(1, dispatcher = "yes"), "dispatcher")
  expect_error(daemons(1, dispatcher = NA), "dispatcher")
  still_works(pid)
  expect_error(daemons(1, seed = "a"), "seed")
  still_works(pid)
  expect_identical(status()$daemons, url)
})

test_that("invalid URLs error naming the URL, leaving existing daemons working", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  url <- status()$daemons

  expect_error(daemons(url = "tcp://127.0.0.1", dispatcher = FALSE), "tcp://127.0.0.1", fixed = TRUE)
  still_works(pid)
  expect_error(daemons(url = "foo://x", dispatcher = FALSE), "foo://x", fixed = TRUE)
  still_works(pid)
  expect_error(daemons(url = "no-scheme", dispatcher = FALSE), "no-scheme", fixed = TRUE)
  expect_error(daemons(url = "tcp://127.0.0.1:notaport", dispatcher = FALSE), "notaport", fixed = TRUE)
  expect_error(daemons(url = "tcp://[::1:0", dispatcher = FALSE), "[::1:0", fixed = TRUE)
  still_works(pid)
  expect_identical(status()$daemons, url)
  # an address that cannot be bound
  expect_error(daemons(url = "tcp://192.0.2.1:0", dispatcher = FALSE), "192.0.2.1", fixed = TRUE)
  still_works(pid)
})

test_that("bad daemon settings in `...` error before anything is started", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  expect_error(daemons(1, dispatcher = FALSE, foo = 1), "foo")
  expect_error(daemons(1, dispatcher = FALSE, maxtasks = -1), "maxtasks")
  expect_error(daemons(1, dispatcher = FALSE, idletime = "a"), "idletime")
  expect_error(daemons(1, dispatcher = FALSE, walltime = c(1, 2)), "walltime")
  expect_error(daemons(1, dispatcher = FALSE, cleanup = "yes"), "cleanup")
  expect_error(daemons(1, dispatcher = FALSE, output = NA), "output")
  expect_error(daemons(1, dispatcher = FALSE, asyncdial = 1), "asyncdial")
  expect_error(daemons(1, dispatcher = FALSE, autoexit = "x"), "autoexit")
  still_works(pid)
  expect_error(launch_local(1, bogus = TRUE), "bogus")
  expect_error(launch_local(-1), "`n`")
  still_works(pid)
  # daemon() itself validates
  expect_error(daemon(1), "url")
  expect_error(daemon("tcp://127.0.0.1:1", maxtasks = -5), "maxtasks")
  still_works(pid)
})

test_that("mirai_map() argument errors", {
  expect_false(daemons_set())
  expect_error(mirai_map(1:3, 1), "`.f` must be of type function, not double", fixed = TRUE)
  expect_error(mirai_map(1:3, "sum"), "`.f` must be of type function, not character", fixed = TRUE)
  # no daemons: a clear error pointing to daemons()
  expect_error(mirai_map(1:3, identity), "daemons(", fixed = TRUE)
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  expect_error(mirai_map(1:3, 1), "`.f` must be of type function, not double", fixed = TRUE)
  expect_error(mirai_map(1:3, function(x, y) x, .args = list(1)),
               "all items in `.args` must be named, unless supplying an environment", fixed = TRUE)
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
