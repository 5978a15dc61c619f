# Garbage collection while tasks are in flight: representative work
# (ephemeral mirai, maps, large vectors, errors) with gc() forced at every
# step, and a short gctorture() pass over the mirai object's lifecycle.

test_that("tasks in flight survive forced collections, with and without dispatcher", {
  for (dispatcher in c(TRUE, FALSE)) {
    daemons(2, dispatcher = dispatcher)
    ms <- lapply(1:40, function(i) mirai({
      Sys.sleep(0.01)
      list(i = i, v = rnorm(100))
    }, i = i))
    while (unresolved(ms)) invisible(gc())
    vals <- lapply(ms, function(m) m$data)
    expect_identical(vapply(vals, `[[`, integer(1L), "i"), 1:40)
    daemons(0)
  }
})

test_that("a map collected with gc() after every element keeps its values and names", {
  daemons(2)
  on.exit(daemons(0))
  x <- setNames(1:30, paste0("e", 1:30))
  mp <- mirai_map(x, function(v) {
    Sys.sleep(0.005)
    v * 2L
  })
  got <- list()
  for (i in seq_along(mp)) {
    invisible(gc())
    got[[i]] <- mp[[i]][]
  }
  expect_identical(unlist(got), unname(x * 2L))
  invisible(gc())
  expect_identical(mp[.flat], setNames(x * 2L, names(x)))
})

test_that("large vectors sent from and adopted into R's memory survive collections", {
  daemons(1)
  on.exit(daemons(0))
  big <- runif(2e6)
  ms <- lapply(1:3, function(i) mirai(x * i, x = big, i = i))
  rm(big)
  for (k in 1:5) invisible(gc())
  vals <- lapply(ms, `[`)
  invisible(gc())
  expect_identical(length(vals[[3]]), 2000000L)
  expect_identical(vals[[2]] / 2, vals[[1]])
})

test_that("errors and ephemeral mirai survive collections", {
  daemons(1)
  ms <- lapply(1:10, function(i) mirai(if (i %% 2) stop("odd ", i) else i, i = i))
  while (unresolved(ms)) invisible(gc())
  expect_identical(vapply(ms, function(m) is_mirai_error(m$data), logical(1L)),
                   rep(c(TRUE, FALSE), 5))
  expect_identical(ms[[3]]$data$message, "odd 3")
  daemons(0)
  e <- lapply(1:2, function(i) mirai({
    Sys.sleep(0.3)
    i
  }, i = i))
  for (k in 1:5) invisible(gc())
  expect_identical(lapply(e, `[`), list(1L, 2L))
})

test_that("the mirai lifecycle under gctorture()", {
  daemons(1)
  on.exit(daemons(0))
  gctorture(TRUE)
  m <- mirai(list(a = 1, b = "x"))
  v <- m[]
  u <- unresolved(m)
  d <- m$data
  gctorture(FALSE)
  expect_identical(v, list(a = 1, b = "x"))
  expect_false(u)
  expect_identical(d, v)
  expect_identical(capture.output(print(m)), "< mirai [$data] >")
})
