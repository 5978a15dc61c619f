# mirai_map(): inputs, collection options, printing and subsetting.

test_that("maps over vectors and lists, keeping names", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  mp <- mirai_map(1:4, function(x) x * 2L)
  expect_s3_class(mp, "mirai_map")
  expect_true(is_mirai_map(mp))
  expect_length(mp, 4L)
  expect_true(all(vapply(mp, is_mirai, logical(1L))))
  expect_identical(mp[], list(2L, 4L, 6L, 8L))
  expect_invisible(mirai_map(1:2, identity))

  named <- mirai_map(c(a = 1, b = 2, c = 3), function(x) x + 0.5)
  expect_identical(named[], list(a = 1.5, b = 2.5, c = 3.5))
  expect_identical(named[.flat], c(a = 1.5, b = 2.5, c = 3.5))

  lst <- mirai_map(list(first = 1:3, second = letters), length)
  expect_identical(lst[], list(first = 3L, second = 26L))

  chr <- mirai_map(c("x", "y"), toupper)
  expect_identical(chr[.flat], c("X", "Y"))

  expect_identical(mirai_map(list(), identity)[], list())
})

test_that("data frames and matrices map over rows (multiple arguments)", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  df <- data.frame(a = 1:3, b = 4:6)
  expect_identical(mirai_map(df, function(a, b) a + b)[.flat], c(5L, 7L, 9L))
  # arguments matched by column name
  expect_identical(mirai_map(df, function(b, a) a * 10L + b)[.flat], c(14L, 25L, 36L))
  # row names kept
  df2 <- data.frame(x = c(1, 2), y = c("p", "q"), row.names = c("r1", "r2"))
  expect_identical(mirai_map(df2, function(x, y) paste0(y, x))[], list(r1 = "p1", r2 = "q2"))
  # factors arrive as their labels
  df3 <- data.frame(f = factor(c("lo", "hi")), n = 1:2)
  expect_identical(mirai_map(df3, function(f, n) paste(f, n))[.flat], c("lo 1", "hi 2"))

  m <- matrix(1:6, nrow = 3, dimnames = list(c("i", "j", "k"), c("x", "y")))
  expect_identical(mirai_map(m, function(x, y) y - x)[], list(i = 3L, j = 3L, k = 3L))
  m2 <- matrix(c(1, 2, 3, 4), nrow = 2)
  expect_identical(mirai_map(m2, function(p, q) p / q)[.flat], c(1 / 3, 2 / 4))
})

test_that("`...` go to the daemons' globals and `.args` are further arguments", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  f <- function(x, y) x + y + z
  environment(f) <- globalenv()
  expect_identical(mirai_map(1:3, f, z = 100, .args = list(y = 10))[.flat], c(111, 112, 113))
  e <- new.env()
  e$z <- 1000
  expect_identical(mirai_map(1:2, f, e, .args = list(y = 0))[.flat], c(1001, 1002))
  g <- function(x, helper) helper(x)
  expect_identical(mirai_map(1:2, g, .args = list(helper = function(v) v * 3L))[.flat], c(3L, 6L))
  # functions with closures
  k <- 7L
  h <- function(x) x + k
  expect_identical(mirai_map(1:2, h)[.flat], c(8L, 9L))
})

test_that("errors are values unless .stop is given", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  mp <- mirai_map(1:3, function(x) if (x == 2L) stop("two is bad") else x)
  res <- mp[]
  expect_identical(res[[1]], 1L)
  expect_true(is_mirai_error(res[[2]]))
  expect_identical(conditionMessage(res[[2]]), "two is bad")
  expect_identical(res[[3]], 3L)
  expect_stop_error(tryCatch(mp[.stop], error = identity), 2, "two is bad")
  # a named map names the element
  nm <- mirai_map(c(a = 1L, b = 2L), function(x) if (x == 2L) stop("b is bad") else x)
  expect_stop_error(tryCatch(nm[.stop], error = identity), 2, "b is bad", name = "b")
})

test_that("[.stop] raises at the first error and cancels the rest", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  mp <- mirai_map(1:4, function(x) {
    if (x == 1L) stop("first fails")
    Sys.sleep(3)
    x
  })
  t0 <- Sys.time()
  err <- tryCatch(mp[.stop], error = identity)
  expect_stop_error(err, 1, "first fails")
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 2.5)
  expect_false(unresolved(mp))
  for (i in 2:4) expect_identical(unclass(mp[[i]]$data), 20L)
})

test_that("[.flat] flattens, and errors on differing types", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  expect_identical(mirai_map(1:3, function(x) x > 1L)[.flat], c(FALSE, TRUE, TRUE))
  mp <- mirai_map(1:2, function(x) if (x == 1L) 1 else "a")
  expect_error(mp[.flat], flat_error_text("double", "character"), fixed = TRUE)
  # the values are still there
  expect_identical(mp[], list(1, "a"))
})

test_that("[.progress] returns the values and reports progress", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  old <- options(cli.progress_show_after = 0)
  on.exit(options(old), add = TRUE)
  mp <- mirai_map(1:4, function(x) {
    Sys.sleep(0.25)
    x
  })
  out <- capture.output(res <- mp[.progress], type = "message")
  expect_identical(res, as.list(1:4))
  expect_true(length(out) > 0L && any(nzchar(out)))
  # combined with .stop and .flat
  mp2 <- mirai_map(1:4, function(x) {
    Sys.sleep(0.2)
    x
  })
  out2 <- capture.output(res2 <- mp2[.stop, .progress, .flat], type = "message")
  expect_identical(res2, 1:4)
  mp3 <- mirai_map(1:3, function(x) {
    Sys.sleep(0.2)
    if (x == 3L) stop("three")
    x
  })
  err <- tryCatch(suppressMessages(capture.output(mp3[.stop, .progress], type = "message")),
                  error = identity)
  expect_stop_error(err, 3, "three")
  expect_identical(mp3[[1]]$data, 1L)
})

test_that("collect_mirai() takes map options as a character vector or a named list", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  old <- options(cli.progress_show_after = 0)
  on.exit(options(old), add = TRUE)
  mp <- mirai_map(1:3, function(x) x^2)
  expect_identical(collect_mirai(mp), list(1, 4, 9))
  expect_identical(collect_mirai(mp, options = ".stop"), list(1, 4, 9))
  expect_identical(collect_mirai(mp, options = ".flat"), c(1, 4, 9))
  expect_identical(suppressMessages(collect_mirai(mp, options = c(".stop", ".progress"))), list(1, 4, 9))
  expect_identical(suppressMessages(collect_mirai(mp, options = list(.stop = TRUE, .progress = TRUE))),
                   list(1, 4, 9))
  # a cli progress specification, as purrr passes it
  expect_identical(suppressMessages(collect_mirai(mp, options = list(.stop = TRUE, .progress = "Mapping"))),
                   list(1, 4, 9))
  expect_identical(suppressMessages(collect_mirai(mp, options = list(.stop = TRUE, .progress = list(name = "Mapping")))),
                   list(1, 4, 9))
  # a fresh map each time: collecting with .stop cancels what is unfinished
  bad <- function() mirai_map(1:3, function(x) if (x == 2) stop("nope") else x)
  expect_stop_error(tryCatch(collect_mirai(bad(), options = ".stop"), error = identity), 2, "nope")
  expect_error(suppressMessages(collect_mirai(bad(), options = c(".stop", ".progress"))), stop_index_text(2),
               fixed = TRUE)
  expect_error(collect_mirai(bad(), options = list(.stop = TRUE)), stop_index_text(2), fixed = TRUE)
  # only the names select options: [QUIRK] `.stop = FALSE` still stops
  expect_error(collect_mirai(bad(), options = list(.stop = FALSE)), stop_index_text(2), fixed = TRUE)
  # .flat treats an error value after the first element as .stop does
  expect_error(collect_mirai(bad(), options = ".flat"), stop_index_text(2), fixed = TRUE)
  # without options the error is a value
  expect_true(is_mirai_error(collect_mirai(bad())[[2]]))
  # and call_mirai() waits for a map
  mp2 <- mirai_map(1:2, function(x) {
    Sys.sleep(0.2)
    x
  })
  expect_identical(call_mirai(mp2), mp2)
  expect_false(unresolved(mp2))
})

test_that("mirai_map prints < mirai map [k/n] >; its elements are mirai", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  mp <- mirai_map(1:3, function(x) {
    Sys.sleep(if (x == 3L) 1.5 else 0)
    x
  })
  expect_match(capture.output(print(mp)), "^< mirai map \\[[0-3]/3\\] >$")
  call_mirai(list(mp[[1]], mp[[2]]))
  expect_identical(capture.output(print(mp)), "< mirai map [2/3] >")
  mp[]
  expect_identical(capture.output(print(mp)), "< mirai map [3/3] >")
  # single-element extraction gives the mirai
  expect_s3_class(mp[[3]], "mirai")
  expect_identical(mp[[3]]$data, 3L)
  expect_identical(collect_mirai(unclass(mp)[-1]), list(2L, 3L))
  expect_identical(mirai_map(integer(), identity)[.flat], NULL)
  expect_identical(capture.output(print(mirai_map(list(), identity))), "< mirai map [0/0] >")
})

test_that("mirai_map() on a daemon needs daemons set there; local_url() + launch_local() is permitted", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  v <- mirai(mirai::mirai_map(1:2, function(x) x))[]
  expect_true(is_mirai_error(v))
  expect_match(conditionMessage(v), "No daemons set.", fixed = TRUE)
  # inside a map task, local daemons are launched through a URL
  r <- mirai_map(1, function(x) {
    mirai::daemons(url = mirai::local_url(), dispatcher = FALSE)
    on.exit(mirai::daemons(0))
    mirai::launch_local(1)
    list(Sys.getpid(), mirai::mirai(Sys.getpid(), .timeout = 20000)[])
  })[[1]][]
  expect_type(r[[2]], "integer")
  expect_false(r[[2]] %in% c(r[[1]], Sys.getpid()))
})
