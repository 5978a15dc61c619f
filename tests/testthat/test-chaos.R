# A chaos soak: many tasks on a few daemons while daemons are killed with
# SIGKILL at random and replaced. With `retry`, every task still returns
# its own correct value; without, every task resolves (its value, or
# errorValue 19 for a task lost with its daemon) and none is left pending.
# Killing the host takes its daemons with it.


chaos_tasks <- as.integer(Sys.getenv("MIRAI_CHAOS_TASKS", "20000"))

# The pids of the daemons serving this session's profile at `url`.
daemon_pids <- function(url) setdiff(processes_showing(url), Sys.getpid())

# Submit `n` tasks to 4 daemons with `retry`, killing one daemon about
# every half second (and launching a replacement) until all have resolved.
# Returns the values and how many kills were made.
soak <- function(n, retry) {
  daemons(4, retry = retry)
  on.exit(daemons(0))
  url <- status()$daemons
  expect_true(wait_conn(4, timeout = 60))
  # every tenth task takes a little while, so kills land on tasks in
  # flight (the function travels light: enclosed by the global environment)
  ms <- mirai_map(seq_len(n), gf(function(i) { if (i %% 10L == 0L) Sys.sleep(0.01); i * 2L }))
  tasks <- unclass(ms)
  kills <- 0L
  deadline <- Sys.time() + 600
  while (unresolved(tasks) && Sys.time() < deadline) {
    pids <- daemon_pids(url)
    if (length(pids)) {
      tools::pskill(pids[sample.int(length(pids), 1L)], tools::SIGKILL)
      kills <- kills + 1L
    }
    launch_local(1)
    # the chaos's pace (not a synchronisation: the loop ends on an event)
    Sys.sleep(runif(1, 0.3, 0.7))
  }
  message(sprintf("soak: %d tasks, retry %d, %d kills, %s retries", n, retry, kills, format(status()$retries)))
  values <- lapply(tasks, function(m) m$data)
  list(values = values, kills = kills, retries = status()$retries)
}

test_that("retry = 3: under random SIGKILLs every task returns its correct value exactly once", {
  r <- soak(chaos_tasks, retry = 3L)
  expect_gt(r$kills, 0L)
  ok <- vapply(seq_along(r$values), function(i) identical(r$values[[i]], i * 2L), NA)
  expect_true(all(ok), info = sprintf("%d of %d tasks wrong, %d kills", sum(!ok), length(ok), r$kills))
  expect_gte(r$retries, 1)
})

test_that("retry = 0: under random SIGKILLs every task resolves, to its value or 19", {
  r <- soak(chaos_tasks, retry = 0L)
  expect_gt(r$kills, 0L)
  is_value <- vapply(seq_along(r$values), function(i) identical(r$values[[i]], i * 2L), NA)
  is_lost <- vapply(r$values, function(v) is_error_value(v) && unclass(v) == 19L, NA)
  expect_true(all(is_value | is_lost))
  expect_false(any(vapply(r$values, inherits, NA, "unresolvedValue")))
})

test_that("a host killed with SIGKILL takes all its daemons with it", {
  p <- r_process(paste(
    "library(mirai)",
    "daemons(4)",
    "while (status()$connections < 4) Sys.sleep(0.05)",
    "m <- mirai_map(1:8, function(i) Sys.sleep(30))",
    "cat('URL', status()$daemons, '\\n')",
    "Sys.sleep(120)",
    sep = "; "
  ))
  on.exit(kill_process(p))
  lines <- read_lines_until(p, function(l) any(grepl("^URL ", l)), timeout = 60)
  url <- sub("^URL (\\S+).*$", "\\1", grep("^URL ", lines, value = TRUE))
  expect_length(url, 1L)
  pids <- daemon_pids(url)
  expect_length(pids, 4L)
  tools::pskill(p$get_pid(), tools::SIGKILL)
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, NA)), timeout = 10))
})
