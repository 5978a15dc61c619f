# Large `...` and `.args` objects of a mirai_map() go to each daemon once,
# not inside every task (src/rust/src/host/shared.rs, R/map.R).

shares_sent <- function() .Call(mirai:::wrap__shares_sent)
# How many shared objects each connected daemon keeps.
kept_by_daemons <- function(.compute = NULL)
  unlist(collect_mirai(everywhere(.Call(mirai:::wrap__shared_kept), .compute = .compute)))

for (disp in c(FALSE, TRUE)) {
  test_that(sprintf("a large object reaches each daemon once (dispatcher = %s)", disp), {
    daemons(2, dispatcher = disp)
    on.exit(daemons(0))
    big <- runif(2e5) # 1.6 MB
    before <- shares_sent()
    r <- mirai_map(1:40, function(i) length(big) + sum(big[1:3]) + i, big = big)[]
    sent <- shares_sent() - before
    expect_equal(unlist(r), length(big) + sum(big[1:3]) + 1:40)
    expect_gte(sent, 1)
    expect_lte(sent, 2)
    # in .args, by name and by position, and a list holding a large vector
    before <- shares_sent()
    r <- mirai_map(1:30, function(i, b, l) b[i] + l$v[i], .args = list(b = big, l = list(v = big)))[]
    expect_equal(unlist(r), 2 * big[1:30])
    r <- mirai_map(1:10, function(i, b) b[i], .args = list(big))[]
    expect_equal(unlist(r), big[1:10])
    expect_lte(shares_sent() - before, 6)
    # once the map is done, the daemons let go of the objects
    expect_equal(kept_by_daemons(), c(0L, 0L))
  })
}

test_that("small objects, a single task and sync profiles are not shared", {
  daemons(2)
  on.exit(daemons(0))
  before <- shares_sent()
  small <- runif(10)
  expect_equal(unlist(mirai_map(1:20, function(i) small[1] + i, small = small)[]), small[1] + 1:20)
  big <- runif(2e5)
  expect_equal(mirai_map(1L, function(i) length(big), big = big)[][[1L]], 2e5L)
  expect_equal(shares_sent(), before)
  daemons(sync = TRUE, .compute = "s")
  on.exit(daemons(0, .compute = "s"), add = TRUE)
  expect_equal(unlist(mirai_map(1:3, function(i) length(big) + i, big = big, .compute = "s")[]),
               2e5 + 1:3)
  expect_equal(shares_sent(), before)
})

test_that("each task gets the object afresh: changes do not carry over, cleanup still applies", {
  daemons(1)
  on.exit(daemons(0))
  big <- runif(2e5)
  first <- big[1]
  # every task changes its global `big` in place and reports what it saw
  r <- mirai_map(1:20, function(i) {
    seen <- big[1]
    eval(quote(big[1] <- -1), globalenv())
    seen
  }, big = big)[]
  expect_equal(unlist(r), rep(first, 20))
  r <- mirai_map(1:20, function(i, b) {
    seen <- b[1]
    b[1] <- -1
    seen
  }, .args = list(b = big))[]
  expect_equal(unlist(r), rep(first, 20))
  # cleanup: the map's globals are gone from the daemon afterwards
  expect_false(mirai(exists("big", envir = globalenv()))[])
  expect_equal(kept_by_daemons(), 0L)
})

test_that("a daemon that connects later, and a map over data frame rows, get the object", {
  daemons(url = local_url())
  on.exit(daemons(0))
  big <- list(a = runif(2e5), b = "x")
  df <- data.frame(x = 1:6, y = 6:1)
  before <- shares_sent()
  m <- mirai_map(df, function(x, y, w) x + y + length(w$a), .args = list(w = big))
  expect_equal(shares_sent(), before) # nobody connected: nothing sent yet
  launch_local(1)
  expect_equal(unlist(m[]), rep(7 + 2e5, 6))
  expect_equal(shares_sent() - before, 1)
  expect_equal(kept_by_daemons(), 0L)
})

test_that("errors in elements, .stop and cancellation leave the daemons clean", {
  daemons(2)
  on.exit(daemons(0))
  big <- runif(2e5)
  expect_error(
    mirai_map(1:20, function(i) if (i == 3) stop("boom") else length(big), big = big)[.stop],
    "boom"
  )
  m <- mirai_map(1:50, function(i) { Sys.sleep(0.05); length(big) }, big = big)
  stop_mirai(m)
  r <- collect_mirai(m)
  expect_true(all(vapply(r, function(x) identical(x, 2e5L) || is_error_value(x), TRUE)))
  # a cancelled task may still be running: once no daemon is busy with
  # one, no task can name the objects and every daemon has dropped them
  expect_true(wait_for(function() status()$mirai[["executing"]] == 0L))
  expect_equal(kept_by_daemons(), c(0L, 0L))
  # the daemons serve ordinary tasks after all that
  expect_equal(mirai(1 + 1)[], 2)
})
