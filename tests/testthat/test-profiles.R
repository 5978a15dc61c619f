# Compute profiles: independent pools that coexist; with_daemons() and
# local_daemons() switch the default.

pids_of <- function(k = 6L, .compute = NULL)
  sort(unique(unlist(collect_mirai(lapply(seq_len(k), function(i) mirai(Sys.getpid(), .compute = .compute))))))

test_that("two named profiles are independent pools", {
  daemons(2, dispatcher = FALSE, .compute = "cpu")
  on.exit(daemons(0, .compute = "cpu"))
  daemons(2, dispatcher = FALSE, .compute = "gpu")
  on.exit(daemons(0, .compute = "gpu"), add = TRUE)
  expect_false(daemons_set())
  expect_true(daemons_set(.compute = "cpu"))
  expect_true(daemons_set(.compute = "gpu"))
  expect_identical(status(.compute = "cpu")$connections, 2L)
  expect_identical(status(.compute = "gpu")$connections, 2L)
  expect_false(identical(status(.compute = "cpu")$daemons, status(.compute = "gpu")$daemons))
  cpu <- pids_of(.compute = "cpu")
  gpu <- pids_of(.compute = "gpu")
  expect_length(cpu, 2L)
  expect_length(gpu, 2L)
  expect_length(intersect(cpu, gpu), 0L)

  # with_daemons() sends tasks to the named pool
  wc <- with_daemons("cpu", pids_of())
  wg <- with_daemons("gpu", pids_of())
  expect_identical(wc, cpu)
  expect_identical(wg, gpu)
  # and returns the value of the expression
  expect_identical(with_daemons("gpu", mirai(x + 1, x = 41)[]), 42)
  # the default is restored afterwards
  expect_false(daemons_set())

  # local_daemons() for the rest of a function
  f <- function(profile) {
    local_daemons(profile)
    list(set = daemons_set(), pids = pids_of(), map = unlist(mirai_map(1:4, function(i) Sys.getpid())[]))
  }
  rg <- f("gpu")
  expect_true(rg$set)
  expect_identical(rg$pids, gpu)
  expect_true(all(rg$map %in% gpu))
  rc <- f("cpu")
  expect_identical(rc$pids, cpu)
  expect_false(daemons_set())
  # nested: the inner profile wins inside, the outer is restored after
  nested <- with_daemons("cpu", list(
    inner = with_daemons("gpu", mirai(Sys.getpid())[]),
    outer = mirai(Sys.getpid())[]
  ))
  expect_true(nested$inner %in% gpu)
  expect_true(nested$outer %in% cpu)

  # resetting one profile leaves the other alone
  daemons(0, .compute = "cpu")
  expect_false(daemons_set(.compute = "cpu"))
  expect_identical(status(.compute = "gpu")$connections, 2L)
  expect_true(mirai(Sys.getpid(), .compute = "gpu")[] %in% gpu)
  expect_true(wait_for(function() !any(vapply(cpu, pid_alive, logical(1L))), timeout = 2))
})

test_that("a named profile coexists with the default one and ephemeral mirai", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  daemons(1, dispatcher = FALSE, .compute = "other")
  on.exit(daemons(0, .compute = "other"), add = TRUE)
  d <- mirai(Sys.getpid())[]
  o <- mirai(Sys.getpid(), .compute = "other")[]
  expect_false(d == o)
  expect_identical(with_daemons("other", mirai(Sys.getpid())[]), o)
  expect_identical(mirai(Sys.getpid())[], d)
  # an unset profile name falls back to an ephemeral process
  e <- mirai(Sys.getpid(), .compute = "unset-profile")[]
  expect_false(e %in% c(d, o, Sys.getpid()))
  # the miraiDaemons object of a named profile works with with()
  res <- with(daemons(1, dispatcher = FALSE, .compute = "temp"), mirai(Sys.getpid())[])
  expect_false(res %in% c(d, o))
  expect_false(daemons_set(.compute = "temp"))
  expect_true(daemons_set())
  expect_true(daemons_set(.compute = "other"))
})

test_that("everywhere(), race_mirai() and mirai_map() honour .compute", {
  daemons(1, dispatcher = FALSE, .compute = "p1")
  on.exit(daemons(0, .compute = "p1"))
  daemons(1, dispatcher = FALSE, .compute = "p2")
  on.exit(daemons(0, .compute = "p2"), add = TRUE)
  everywhere(NULL, tag = "p1", .compute = "p1")
  everywhere(NULL, tag = "p2", .compute = "p2")
  expect_identical(mirai(tag, .compute = "p1")[], "p1")
  expect_identical(mirai(tag, .compute = "p2")[], "p2")
  expect_identical(mirai_map(1:2, function(i) tag, .compute = "p2")[.flat], c("p2", "p2"))
  ms <- list(mirai(Sys.sleep(2), .compute = "p1"), mirai(1, .compute = "p2"))
  expect_identical(race_mirai(ms, .compute = "p2"), 2L)
  expect_error(race_mirai(ms), "daemons must be set", fixed = TRUE)
  stop_mirai(ms)
  expect_identical(nextget("url", .compute = "p1"), status(.compute = "p1")$daemons)
  expect_length(nextstream(.compute = "p2"), 7L)
  # nextget() and nextstream() default to the "default" profile, not the
  # current one; status() follows the current one
  expect_null(with_daemons("p1", nextget("url")))
  expect_null(with_daemons("p1", nextstream()))
  expect_identical(with_daemons("p1", status()$daemons), status(.compute = "p1")$daemons)
})
