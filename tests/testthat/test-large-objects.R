# Large objects: plain vectors of 4 MB or more travel as raw data in both
# directions (no serialization copy). They must arrive intact, in their
# places among the other objects, whatever their type, with or without
# dispatcher, and a task that fails to rebuild must not desynchronise the
# connection.

big_vectors <- function() list(
  dbl = runif(6e5),                       # 4.8 MB
  int = sample.int(1e6, 1.2e6, TRUE),     # 4.8 MB
  lgl = rep(c(TRUE, NA, FALSE), 4e5),     # 4.8 MB
  raw = as.raw(sample.int(255, 5e6, TRUE)),
  cplx = complex(real = runif(3e5), imaginary = runif(3e5))
)

for (disp in c(FALSE, TRUE)) {
  test_that(sprintf("large vectors in ... and .args arrive intact (dispatcher = %s)", disp), {
    daemons(1, dispatcher = disp)
    on.exit(daemons(0))
    v <- big_vectors()
    for (nm in names(v)) {
      x <- v[[nm]]
      expect_identical(mirai(x, x = x)[], x)
      expect_identical(mirai(y, .args = list(y = x))[], x)
    }
    # mixed with small objects, in both lists, in any order
    res <- mirai(
      list(a, sum(b), c, d, length(e)),
      a = "small", b = v$dbl, c = 1:3,
      .args = list(d = v$int[1:5], e = v$raw)
    )[]
    expect_identical(res, list("small", sum(v$dbl), 1:3, v$int[1:5], length(v$raw)))
    # a large vector with attributes goes the serialized way, still intact
    named <- structure(v$dbl, names = as.character(seq_along(v$dbl)), extra = "attr")
    expect_identical(mirai(x, x = named)[], named)
    # a long vector of doubles both ways
    x <- runif(12.5e6)
    expect_identical(mirai(rev(x), x = x)[], rev(x))
  })
}

test_that("the host's copy stays valid and unmodified while it is sent", {
  daemons(1)
  on.exit(daemons(0))
  x <- runif(2e6)
  keep <- x + 0
  m <- mirai(x, x = x)
  x[1] <- -1 # must not change what is sent
  expect_identical(m[], keep)
  expect_identical(x[1], -1)
  rm(x)
  invisible(gc())
  ms <- lapply(1:3, function(i) mirai(sum(v), v = rep(as.double(i), 1e6)))
  invisible(gc())
  expect_identical(unlist(collect_mirai(ms)), c(1e6, 2e6, 3e6))
})

# An environment R serializes as a reference to the namespace of a package
# that does not exist: rebuilding it on the daemon takes R's fallback (the
# global environment, with a warning), between a task's serialized part and
# its raw data.
missing_namespace <- function() {
  ns <- new.env()
  info <- new.env()
  info$spec <- c(name = "mirai.no.such.package", version = "1.0")
  ns$.__NAMESPACE__. <- info
  ns
}

for (disp in c(FALSE, TRUE)) {
  test_that(sprintf("raw data after an awkward serialized part stays in step (dispatcher = %s)", disp), {
    daemons(1, dispatcher = disp)
    on.exit(daemons(0))
    pid <- mirai(Sys.getpid())[]
    r <- mirai(list(length(big), environmentName(e)), big = runif(1e6), e = missing_namespace())[]
    expect_identical(r, list(1000000L, "R_GlobalEnv"))
    r <- mirai(list(length(big), environmentName(e)),
               .args = list(e = missing_namespace(), big = runif(1e6)))[]
    expect_identical(r, list(1000000L, "R_GlobalEnv"))
    expect_identical(mirai(list(Sys.getpid(), sum(x)), x = rep(1, 1e6))[], list(pid, 1e6))
  })
}

test_that("a large task can be cancelled and its daemon serves on", {
  daemons(1)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  m <- mirai({
    Sys.sleep(30)
    length(x)
  }, x = runif(2e6))
  expect_true(wait_for(function() status()$mirai[["executing"]] == 1))
  expect_true(stop_mirai(m))
  expect_identical(mirai(list(Sys.getpid(), length(y)), y = runif(2e6), .timeout = 10000)[],
                   list(pid, 2000000L))
})

test_that("mirai_map over large elements", {
  daemons(2)
  on.exit(daemons(0))
  xs <- lapply(1:4, function(i) rep(as.double(i), 6e5))
  expect_identical(mirai_map(xs, sum)[.flat], vapply(xs, sum, 0))
})
