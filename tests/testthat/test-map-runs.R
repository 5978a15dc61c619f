# With dispatcher, small map elements go to a daemon in runs of several at
# once, each still its own task (src/rust/src/host/dispatcher.rs).

# Runs of exactly `n` elements from now on (0: the adaptive size again).
fix_runs <- function(n, .compute = NULL)
  .Call(mirai:::wrap__host_fix_runs, mirai:::.profile(.compute)$host, as.integer(n))

# A map function as written at top level by Rscript: one defined in a test
# closes over the test's environment and keeps its source reference (the
# whole file), which make its frames too large to join a run.
top_level <- function(f) {
  environment(f) <- globalenv()
  utils::removeSource(f)
}

test_that("elements of a run are cancelled on their own: running, waiting, or not yet sent", {
  # the map is queued before the daemon connects, so the runs are exactly
  # 1-10, 11-20, 21-30
  daemons(url = local_url())
  on.exit(daemons(0))
  fix_runs(10)
  dir <- tempfile()
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  # runs 1-10, 11-20, 21-30: element 15 blocks the second, 16-20 wait
  # behind it on the daemon
  m <- mirai_map(1:30, top_level(function(i, dir) {
    if (i == 15) {
      Sys.sleep(30)
      file.create(file.path(dir, "slept"))
    }
    file.create(file.path(dir, i))
    i
  }), .args = list(dir = dir))
  launch_local(1)
  call_mirai(m[[14]])
  t0 <- Sys.time()
  expect_true(stop_mirai(m[[25]])) # still queued on the host
  expect_true(stop_mirai(m[[17]])) # waiting in the run
  expect_true(stop_mirai(m[[15]])) # running (or about to)
  r <- m[]
  expect_lt(elapsed(t0), 20)
  for (i in c(15, 17, 25)) {
    expect_s3_class(r[[i]], "errorValue")
    expect_identical(unclass(r[[i]]), 20L)
  }
  rest <- setdiff(1:30, c(15, 17, 25))
  expect_identical(r[rest], as.list(rest))
  # neither the interrupted nor the cancelled elements ran to the end
  expect_false(any(file.exists(file.path(dir, c("slept", 15, 17, 25)))))
  expect_true(all(file.exists(file.path(dir, rest))))
  expect_identical(status()$mirai[["executing"]], 0L)
  expect_identical(mirai("next")[], "next")
})

test_that("runs carry shared objects, and tasks of others keep their turn", {
  daemons(2)
  on.exit(daemons(0))
  fix_runs(8)
  big <- runif(2e5)
  r <- mirai_map(1:50, top_level(function(i) big[i] + i), big = big)[]
  expect_equal(unlist(r), big[1:50] + 1:50)
  # one daemon: a mirai submitted after a map runs after all its elements
  daemons(0)
  daemons(1)
  fix_runs(8)
  order <- tempfile()
  on.exit(unlink(order), add = TRUE)
  m <- mirai_map(1:40, top_level(function(i, f) cat(i, "\n", file = f, append = TRUE)), .args = list(f = order))
  after <- mirai(cat("after\n", file = f, append = TRUE), f = order)
  call_mirai(m)
  call_mirai(after)
  expect_identical(trimws(readLines(order)), c(as.character(1:40), "after"))
})

test_that("adaptive runs: quick maps keep names and .stop, slow maps stay spread", {
  daemons(2)
  on.exit(daemons(0))
  x <- stats::setNames(1:3000, paste0("e", 1:3000))
  expect_identical(mirai_map(x, top_level(function(i) i * 2L))[], as.list(x * 2L))
  expect_error(
    mirai_map(1:3000, top_level(function(i) if (i == 1500) stop("boom") else i))[.stop],
    "1500"
  )
  expect_identical(mirai_map(1:100, top_level(function(i) i))[.flat], 1:100)
  # right after quick maps, slow elements still go to both daemons evenly
  pids <- mirai_map(1:20, top_level(function(i) {
    Sys.sleep(0.05)
    Sys.getpid()
  }))[.flat]
  counts <- as.vector(table(pids))
  expect_length(counts, 2L)
  expect_lte(abs(diff(counts)), 4)
})

test_that("a daemon dying in a run: only its running element is lost, the rest run elsewhere in order", {
  for (retry in 0:1) {
    daemons(url = local_url(), retry = retry)
    fix_runs(10)
    dir <- tempfile()
    dir.create(dir)
    order <- file.path(dir, "order")
    # element 3 kills its daemon once; 4-10 are waiting behind it
    m <- mirai_map(1:20, top_level(function(i, dir, order) {
      if (i == 3 && !file.exists(file.path(dir, "killed"))) {
        file.create(file.path(dir, "killed"))
        tools::pskill(Sys.getpid(), tools::SIGKILL)
      }
      cat(i, "\n", file = order, append = TRUE)
      i
    }), .args = list(dir = dir, order = order))
    launch_local(1)
    expect_true(wait_for(function() file.exists(file.path(dir, "killed")), 20))
    expect_true(wait_conn(0L, timeout = 20))
    launch_local(1)
    r <- m[]
    ran <- as.integer(trimws(readLines(order)))
    if (retry == 0L) {
      expect_s3_class(r[[3]], "errorValue")
      expect_identical(unclass(r[[3]]), 19L)
      expect_identical(r[-3], as.list(c(1:2, 4:20)))
      expect_identical(ran, c(1:2, 4:20))
    } else {
      # the running element is retried first, then the waiting ones
      expect_identical(r, as.list(1:20))
      expect_identical(ran, 1:20)
      expect_identical(status()$retries, 1L)
    }
    daemons(0)
    unlink(dir, recursive = TRUE)
  }
})
