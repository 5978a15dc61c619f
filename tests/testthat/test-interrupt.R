# Waiting is interruptible: SIGINT returns control to R.

interruptible_session <- function(wait_expr) {
  r_process(paste(
    "library(mirai)",
    "daemons(1, dispatcher = FALSE)",
    "m <- mirai(Sys.sleep(30))",
    # WAITING is printed inside the handler's scope: an interrupt sent after
    # it is always caught here
    sprintf("r <- tryCatch({ cat('WAITING\\n'); %s; 'not interrupted' }, interrupt = function(e) 'interrupted')",
            wait_expr),
    "cat(r, '\\n')",
    "daemons(0)",
    "cat('AFTER', mirai(1 + 1)[], '\\n')",
    sep = "; "
  ))
}

check_interrupt <- function(wait_expr) {
  p <- interruptible_session(wait_expr)
  on.exit(kill_process(p))
  lines <- read_lines_until(p, function(l) any(grepl("WAITING", l)), timeout = 30)
  expect_true(any(grepl("WAITING", lines)))
  # give it time to be inside the wait (which cannot end on its own: the
  # task sleeps 30 s)
  Sys.sleep(0.5)
  expect_true(p$is_alive())
  t0 <- Sys.time()
  p$interrupt()
  more <- read_lines_until(p, function(l) any(grepl("AFTER", l)), timeout = 10)
  expect_true(any(grepl("^interrupted", more)))
  expect_false(any(grepl("not interrupted", more)))
  # control came back promptly, and the session carried on
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 8)
  expect_true(any(grepl("AFTER 2", more)))
  expect_true(wait_for(function() !p$is_alive(), timeout = 10))
}

test_that("m[] can be interrupted with SIGINT", {
  check_interrupt("m[]")
})

test_that("call_mirai() on a list can be interrupted", {
  check_interrupt("call_mirai(list(m, m))")
})

test_that("collecting a mirai_map can be interrupted", {
  check_interrupt("mirai_map(1:2, function(x) Sys.sleep(30))[.progress]")
})

test_that("race_mirai() can be interrupted", {
  check_interrupt("race_mirai(list(m))")
})
