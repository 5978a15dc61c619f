# purrr's in_parallel() (SPEC 5.4) with the real purrr and carrier from
# CRAN: purrr calls daemons_set(), mirai_map() with a carrier crate,
# collect_mirai(options = ...) and, on an interrupt, stop_mirai().

skip_if_not_installed("purrr", "1.1.0")
skip_if_not_installed("carrier")

purrr_modes <- list(dispatcher = TRUE, direct = FALSE)

for (mode in names(purrr_modes)) {
  test_that(sprintf("map variants run in parallel and match sequential purrr (%s)", mode), {
    daemons(2, dispatcher = purrr_modes[[mode]])
    on.exit(daemons(0))
    pids <- purrr::map_int(1:20, purrr::in_parallel(function(x) Sys.getpid()))
    # the work ran on the daemons, not in this session
    expect_false(Sys.getpid() %in% pids)
    expect_lte(length(unique(pids)), 2L)

    x <- c(a = 1, b = 2, c = 3)
    expect_identical(purrr::map(x, purrr::in_parallel(function(v) v * 2)),
                     purrr::map(x, function(v) v * 2))
    expect_identical(purrr::map_dbl(x, purrr::in_parallel(function(v) v + 0.5)),
                     c(a = 1.5, b = 2.5, c = 3.5))
    expect_identical(purrr::map_int(1:4, purrr::in_parallel(function(v) v * 2L)),
                     c(2L, 4L, 6L, 8L))
    expect_identical(purrr::map_chr(x, purrr::in_parallel(function(v) format(v))),
                     c(a = "1", b = "2", c = "3"))
    expect_identical(purrr::map_lgl(1:3, purrr::in_parallel(function(v) v > 1)),
                     c(FALSE, TRUE, TRUE))
    expect_identical(purrr::map2_chr(1:2, c("p", "q"), purrr::in_parallel(function(a, b) paste0(b, a))),
                     c("p1", "q2"))
    expect_identical(purrr::pmap_int(list(1:3, 4:6, 7:9), purrr::in_parallel(function(a, b, c) a + b + c)),
                     c(12L, 15L, 18L))
    expect_identical(purrr::imap_chr(c(u = 1, v = 2), purrr::in_parallel(function(v, i) paste(i, v))),
                     c(u = "u 1", v = "v 2"))
    expect_identical(purrr::map_vec(1:3, purrr::in_parallel(function(v) as.Date("2020-01-01") + v)),
                     as.Date("2020-01-01") + 1:3)
    expect_identical(purrr::map(list(), purrr::in_parallel(function(v) v)), list())
    expect_identical(purrr::map_dbl(numeric(), purrr::in_parallel(function(v) v)), numeric())
    expect_identical(purrr::map2(list(), list(), purrr::in_parallel(function(a, b) a)), list())
  })
}

test_that("crates carry their data; base and package functions are found on the daemon", {
  daemons(2)
  on.exit(daemons(0))
  offset <- 10
  scale_by <- function(v, k) v * k
  r <- purrr::map_dbl(1:3, purrr::in_parallel(function(v) stats::median(c(scale_by(v, 2), offset)),
                                              scale_by = scale_by, offset = offset))
  expect_identical(r, c(6, 7, 8))
  # a crate without the data it needs fails on the daemon, reported by purrr
  err <- tryCatch(purrr::map(1:2, purrr::in_parallel(function(v) v + not_there_at_all)),
                  error = function(e) e)
  expect_s3_class(err, "purrr_error_indexed")
  expect_match(conditionMessage(err$parent), "not_there_at_all")
})

test_that("data frames and other vctrs-shaped inputs map row- or column-wise as in purrr", {
  daemons(2)
  on.exit(daemons(0))
  # columns set through attributes directly, with duplicated row names
  df <- structure(list(1:3, c(2.5, 3.5, 4.5)), names = c("a", ""),
                  row.names = c(NA, -3L), class = "data.frame")
  expect_identical(purrr::map(df, purrr::in_parallel(function(col) sum(col))),
                   purrr::map(df, function(col) sum(col)))
  lst <- structure(list(x = 1, y = 2), row.names = c("r1", "r2"))
  expect_identical(purrr::map_dbl(lst, purrr::in_parallel(function(v) v * 3)),
                   c(x = 3, y = 6))
  skip_if_not_installed("vctrs")
  rec <- vctrs::new_rcrd(list(p = 1:3, q = c("a", "b", "c")))
  expect_identical(purrr::map_chr(rec, purrr::in_parallel(function(r) paste0(vctrs::field(r, "q"), vctrs::field(r, "p")))),
                   c("a1", "b2", "c3"))
})

test_that("errors are reported by purrr with index, name and the original error as parent", {
  for (dispatcher in c(TRUE, FALSE)) {
    daemons(2, dispatcher = dispatcher)
    err <- tryCatch(
      purrr::map(c(a = 1, b = 2, c = 3), purrr::in_parallel(function(v) if (v == 2) stop("boom ", v) else v)),
      error = function(e) e
    )
    expect_s3_class(err, "purrr_error_indexed")
    expect_identical(err$location, 2L)
    expect_identical(err$name, "b")
    expect_identical(conditionMessage(err$parent), "boom 2")
    expect_match(paste(format(err), collapse = "\n"), "boom 2")
    # unnamed input: no name
    err <- tryCatch(
      purrr::map_int(1:4, purrr::in_parallel(function(v) if (v == 4L) stop("last") else v)),
      error = function(e) e
    )
    expect_identical(err$location, 4L)
    expect_null(err$name)
    # a typed map whose results have the wrong type: purrr's own error
    # when it simplifies the collected results
    err <- tryCatch(purrr::map_int(1:2, purrr::in_parallel(function(v) "no")),
                    error = function(e) e)
    expect_s3_class(err, "error")
    expect_match(conditionMessage(err), "convert", ignore.case = TRUE)
    # the daemons carry on after errors
    expect_identical(purrr::map_int(1:2, purrr::in_parallel(function(v) v)), 1:2)
    daemons(0)
  }
})

test_that(".progress is accepted and the result is complete", {
  daemons(2)
  on.exit(daemons(0))
  r <- purrr::map_int(1:30, purrr::in_parallel(function(v) v), .progress = TRUE)
  expect_identical(r, 1:30)
  r <- purrr::map(1:3, purrr::in_parallel(function(v) v), .progress = "mapping")
  expect_identical(r, as.list(1:3))
})

test_that("without daemons set, in_parallel() maps in this session (daemons_set() is FALSE)", {
  daemons(0)
  expect_false(daemons_set())
  r <- purrr::map_int(1:2, purrr::in_parallel(function(v) Sys.getpid()))
  expect_identical(r, rep(Sys.getpid(), 2L))
  daemons(1)
  on.exit(daemons(0))
  expect_true(daemons_set())
  r <- purrr::map_int(1:2, purrr::in_parallel(function(v) Sys.getpid()))
  expect_false(any(r == Sys.getpid()))
})

test_that("an interrupt while purrr collects stops the remaining tasks", {
  for (dispatcher in c("TRUE", "FALSE")) {
    p <- r_process(paste(
      "library(mirai)",
      sprintf("daemons(1, dispatcher = %s)", dispatcher),
      "r <- tryCatch({ cat('WAITING\\n'); purrr::map(1:5, purrr::in_parallel(function(x) Sys.sleep(30))); 'not interrupted' }, interrupt = function(e) 'interrupted')",
      "cat(r, '\\n')",
      # with dispatcher the daemon is free again at once: the running
      # element was stopped and the queued ones dropped (else this waits
      # ~150 s); without, stop_mirai() cannot reach tasks already sent
      if (dispatcher) "cat('AFTER', mirai(1 + 1)[], '\\n')" else "cat('AFTER 2\\n')",
      "daemons(0)",
      sep = "; "
    ))
    lines <- read_lines_until(p, function(l) any(grepl("WAITING", l)), timeout = 60)
    expect_true(any(grepl("WAITING", lines)))
    # the waiting cannot end by itself (each element sleeps 30 s); give the
    # session a moment to be inside purrr's collection
    Sys.sleep(0.5)
    p$interrupt()
    more <- read_lines_until(p, function(l) any(grepl("AFTER", l)), timeout = 20)
    kill_process(p)
    expect_true(any(grepl("^interrupted", more)), info = dispatcher)
    expect_true(any(grepl("AFTER 2", more)), info = paste(dispatcher, paste(more, collapse = "\n")))
  }
})
