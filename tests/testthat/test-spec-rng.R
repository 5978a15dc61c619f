# SPEC 3.5: the random number stream contract; Deviations 2.

# Keep the host session's RNG state (and kind) as it was before the test.
local_rng <- function(frame = parent.frame()) {
  had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  old <- if (had) get(".Random.seed", envir = globalenv())
  kinds <- RNGkind()
  spec_defer({
    RNGkind(kinds[1L], kinds[2L], kinds[3L])
    if (had) assign(".Random.seed", old, envir = globalenv())
    else if (exists(".Random.seed", envir = globalenv(), inherits = FALSE))
      rm(".Random.seed", envir = globalenv())
  }, frame = frame)
}

# rnorm(n, mean, sd) evaluated from stream `s`.
rnorm_from <- function(s, n, mean, sd) with_rng_preserved({
  RNGkind("L'Ecuyer-CMRG")
  assign(".Random.seed", s, envir = globalenv())
  stats::rnorm(n, mean, sd)
})

test_that("the vignette example gives the documented numbers", {
  res <- with(daemons(3, seed = 1234L), mirai_map(1:3, rnorm, .args = list(mean = 20, sd = 2))[])
  expect_equal(res, list(19.86409, c(19.55834, 22.30159), c(20.62193, 23.06144, 19.61896)), tolerance = 1e-6)
  # element i evaluated with N^(i-1)(S0), S0 from set.seed(1234, kind = "L'Ecuyer-CMRG")
  s0 <- s0_seeded(1234L)
  expect_identical(s0[1L], 10407L)
  expected <- lapply(1:3, function(i) rnorm_from(nrs(s0, i - 1L), i, 20, 2))
  expect_identical(res, expected)
  # independent of the number of daemons and of the dispatcher
  res1 <- with(daemons(1, dispatcher = FALSE, seed = 1234L), mirai_map(1:3, rnorm, .args = list(mean = 20, sd = 2))[])
  expect_identical(res1, expected)
  expect_false(daemons_set())
})

test_that("seeded tasks take N^(j-1)(S0) in submission order, in both modes", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(2, dispatcher = disp, seed = 5L)
    s0 <- s0_seeded(5L)
    expect_identical(nextget("stream"), s0)
    ms <- lapply(1:4, function(i) mirai(.Random.seed))
    expect_identical(collect_mirai(ms), lapply(0:3, function(k) nrs(s0, k)))
    tm <- try_mirai(.Random.seed)
    expect_identical(tm[], nrs(s0, 4L))
    mp <- mirai_map(1:2, function(x) .Random.seed)
    expect_identical(mp[], list(nrs(s0, 5L), nrs(s0, 6L)))
    expect_identical(nextget("stream"), nrs(s0, 7L))
    # nextstream() returns the cursor, then advances it
    expect_visible(nextstream())
    expect_identical(nextstream(), nrs(s0, 8L))
    expect_identical(nextget("stream"), nrs(s0, 9L))
    # the task's .Random.seed persists on the daemon (a global)
    daemons(0)
  }
})

test_that("seed = NULL: one draw on the host, then S0 from the reseeded L'Ecuyer-CMRG", {
  local_rng()
  RNGkind("Mersenne-Twister", "Inversion", "Rejection")
  set.seed(42)
  s0 <- s0_predicted()
  after_draw <- with_rng_preserved({
    stats::rexp(1)
    stats::runif(3)
  })
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  expect_identical(nextget("stream"), s0)
  expect_identical(s0[1L], 10407L)
  # the host's kind is kept and its state is as after one rexp() draw
  expect_identical(RNGkind()[1L], "Mersenne-Twister")
  expect_identical(stats::runif(3), after_draw)
  # launch commands take C in order, then nextstream() continues from there
  cmds <- launch_remote(2)
  expect_identical(cmd_rs(cmds[1L]), s0)
  expect_identical(cmd_rs(cmds[2L]), nrs(s0, 1L))
  expect_identical(nextstream(), nrs(s0, 2L))
  launch_remote(1)
  expect_identical(nextget("stream"), nrs(s0, 4L))
})

test_that("seed = NULL reseeds even when the kind is already L'Ecuyer-CMRG, and keeps normal.kind", {
  local_rng()
  RNGkind("L'Ecuyer-CMRG", "Box-Muller")
  set.seed(7)
  s0 <- s0_predicted()
  state <- get(".Random.seed", envir = globalenv())
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  expect_identical(nextget("stream"), s0)
  expect_false(identical(s0, state))
  expect_identical(RNGkind()[1:2], c("L'Ecuyer-CMRG", "Box-Muller"))
  expect_identical(s0[1L] %% 100L, 7L)
  expect_false(s0[1L] == 10407L)
})

test_that("daemons() creates .Random.seed on the host if absent", {
  local_rng()
  RNGkind("Mersenne-Twister", "Inversion", "Rejection")
  if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) rm(".Random.seed", envir = globalenv())
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  expect_true(exists(".Random.seed", envir = globalenv(), inherits = FALSE))
})

test_that("seed = NULL, no dispatcher: daemon j starts from N^(j-1)(S0)", {
  local_rng()
  set.seed(99)
  s0 <- s0_predicted()
  spec_daemons(2, dispatcher = FALSE)
  seeds <- everywhere(.Random.seed)[]
  expect_length(seeds, 2L)
  key <- function(s) paste(s, collapse = ",")
  expect_setequal(vapply(seeds, key, ""), c(key(s0), key(nrs(s0, 1L))))
  expect_identical(nextstream(), nrs(s0, 2L))
  # launch_local() continues the cursor
  launch_local(1)
  expect_true(wait_conn(3))
  expect_identical(nextget("stream"), nrs(s0, 4L))
})

test_that("seed = NULL, dispatcher: the k-th connecting daemon gets N^k(S0); nextstream() independent", {
  local_rng()
  set.seed(123)
  s0 <- s0_predicted()
  spec_daemons(2)
  key <- function(s) paste(s, collapse = ",")
  seeds <- everywhere(.Random.seed)[]
  expect_setequal(vapply(seeds, key, ""), c(key(nrs(s0, 1L)), key(nrs(s0, 2L))))
  # the third connection gets N^3(S0)
  launch_local(1)
  expect_true(wait_conn(3))
  seeds <- everywhere(.Random.seed)[]
  expect_setequal(vapply(seeds, key, ""), vapply(1:3, function(k) key(nrs(s0, k)), ""))
  # the host's cursor C is untouched by the dispatcher's copy
  expect_identical(nextstream(), s0)
  expect_identical(nextstream(), nrs(s0, 1L))
})

test_that("dispatcher launch commands carry no rs; seeded non-dispatcher ones an empty rs=c()", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  cmd <- launch_remote(1)
  expect_false(grepl("rs=", cmd, fixed = TRUE))
  daemons(0)
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, seed = 1L)
  cmd <- launch_remote(1)
  expect_true(endsWith(cmd, ",rs=c())'"))
  # launches take no stream when seeded
  expect_identical(nextget("stream"), s0_seeded(1L))
})

test_that("without seed the daemon's stream persists across its tasks", {
  spec_daemons(1)
  first <- mirai(list(before = .Random.seed, x = runif(1), after = .Random.seed))[]
  expect_identical(mirai(.Random.seed)[], first$after)
  mirai(set.seed(2024))[]
  expected <- with_rng_preserved({
    RNGkind("L'Ecuyer-CMRG")
    set.seed(2024)
    stats::runif(2)
  })
  expect_identical(mirai(runif(2))[], expected)
})

test_that("ephemeral tasks take no stream; sync tasks have no per-daemon stream", {
  expect_null(nextstream())
  expect_false(mirai(exists(".Random.seed", envir = globalenv(), inherits = FALSE))[])
  spec_daemons(sync = TRUE)
  expect_false(mirai(exists(".Random.seed", envir = globalenv(), inherits = FALSE))[])
  daemons(0)
  spec_daemons(sync = TRUE, seed = 8L)
  s0 <- s0_seeded(8L)
  expect_identical(mirai(.Random.seed)[], s0)
  expect_identical(mirai(.Random.seed)[], nrs(s0, 1L))
  expect_identical(mirai_map(1:2, function(x) .Random.seed)[], list(nrs(s0, 2L), nrs(s0, 3L)))
})

test_that("nextstream() and nextget() use the literal \"default\" profile", {
  spec_daemons(url = local_url(), seed = 1L, .compute = "spec-rng-other")
  expect_null(with_daemons("spec-rng-other", nextstream()))
  expect_identical(nextstream(.compute = "spec-rng-other"), s0_seeded(1L))
  expect_identical(nextget("stream", .compute = "spec-rng-other"), nrs(s0_seeded(1L), 1L))
})
