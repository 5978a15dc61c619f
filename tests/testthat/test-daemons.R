# daemons(): setting, resetting, URLs, hand-started daemons, sync, seeds,
# status / info, everywhere() and cleanup.

# Distinct daemon pids reached by `k` tasks (round-robin reaches all).
daemon_pids <- function(k = 6L, .compute = NULL)
  unique(unlist(collect_mirai(lapply(seq_len(k), function(i) mirai(Sys.getpid(), .compute = .compute)))))

test_that("daemons(n) connects before returning and returns invisible TRUE", {
  expect_invisible(d <- daemons(2, dispatcher = FALSE))
  on.exit(daemons(0))
  expect_s3_class(d, "miraiDaemons")
  expect_identical(as.vector(unclass(d)), TRUE)
  expect_identical(status()$connections, 2L)
  expect_true(daemons_set())
  pids <- daemon_pids()
  expect_length(pids, 2L)
  expect_false(Sys.getpid() %in% pids)
})

test_that("daemons(0) returns FALSE, unresolved mirai get errorValue 19, daemons exit", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  pids <- daemon_pids()
  m <- mirai({
    Sys.sleep(10)
    1
  })
  Sys.sleep(0.2)
  expect_invisible(r <- daemons(0))
  expect_false(r)
  expect_identical(unclass(m$data), 19L)
  expect_false(daemons_set())
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  expect_null(info())
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 2))
  # later mirai go to ephemeral processes
  p <- mirai(Sys.getpid())[]
  expect_false(p %in% pids)
  expect_false(p == Sys.getpid())
})

test_that("daemons(NULL) resets too", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  expect_false(daemons(NULL))
  expect_false(daemons_set())
  expect_true(wait_for(function() !pid_alive(pid), timeout = 2))
})

test_that("setting daemons again replaces the existing ones", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  old <- mirai(Sys.getpid())[]
  daemons(2, dispatcher = FALSE)
  expect_identical(status()$connections, 2L)
  new <- daemon_pids()
  expect_length(new, 2L)
  expect_false(old %in% new)
  expect_true(wait_for(function() !pid_alive(old), timeout = 2))
})

test_that("daemons(url = local_url()) + launch_local() connect daemons later", {
  url <- local_url()
  expect_type(url, "character")
  expect_false(identical(url, local_url()))
  expect_invisible(daemons(url = url, dispatcher = FALSE))
  on.exit(daemons(0))
  expect_identical(status()$connections, 0L)
  expect_identical(status()$daemons, url)
  expect_identical(nextget("url"), url)
  expect_identical(launch_local(2L), 2L)
  expect_true(wait_conn(2, timeout = 10))
  expect_length(daemon_pids(), 2L)
  launch_local(1)
  expect_true(wait_conn(3, timeout = 10))
  expect_identical(info()[["cumulative"]], 3L)
})

test_that("a tcp URL with port 0 reports the port actually assigned", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  url <- status()$daemons
  expect_match(url, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  port <- url_port(url)
  expect_true(port > 0L && port < 65536L)
  expect_identical(nextget("url"), url)
  launch_local(1)
  expect_true(wait_conn(1))
  expect_identical(mirai(1 + 1)[], 2)
  expect_identical(local_url(tcp = TRUE, port = 5555), "tcp://127.0.0.1:5555")
})

test_that("IPv6 loopback URLs work", {
  ok <- tryCatch({
    suppressMessages(daemons(url = "tcp://[::1]:0", dispatcher = FALSE))
    TRUE
  }, error = function(e) FALSE)
  skip_if_not(ok, "IPv6 loopback unavailable")
  on.exit(daemons(0))
  url <- status()$daemons
  expect_match(url, "^tcp://\\[::1\\]:[0-9]+$")
  expect_true(url_port(url) > 0L)
  launch_local(1)
  expect_true(wait_conn(1))
  expect_identical(mirai(6 * 7)[], 42)
})

test_that("a daemon started by hand dials in and exits when daemons are reset", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  url <- status()$daemons
  p <- r_process(sprintf('mirai::daemon("%s", dispatcher = FALSE)', url))
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 15))
  expect_identical(mirai(Sys.getpid())[], p$get_pid())
  expect_identical(mirai(paste(a, "world"), a = "hello")[], "hello world")
  daemons(0)
  expect_true(wait_for(function() !p$is_alive(), timeout = 5))
  expect_identical(p$get_exit_status(), 0L)
})

test_that("sync = TRUE evaluates in the current process", {
  expect_invisible(d <- daemons(sync = TRUE))
  on.exit(daemons(0))
  expect_s3_class(d, "miraiDaemons")
  expect_true(daemons_set())
  m <- mirai(Sys.getpid())
  expect_false(unresolved(m))
  expect_identical(m[], Sys.getpid())
  expect_identical(mirai(a + b, a = 1, .args = list(b = 2))[], 3)
  # `...` objects do not leak into the session's global environment
  expect_false(exists("a", envir = globalenv(), inherits = FALSE))
  expect_true(is_mirai_error(mirai(stop("sync error"))[]))
  expect_identical(mirai(1, .compute = NULL)[], 1)
})

test_that("an integer seed gives reproducible random numbers", {
  run <- function() {
    daemons(2, dispatcher = FALSE, seed = 1234)
    on.exit(daemons(0))
    unlist(collect_mirai(lapply(1:6, function(i) mirai(runif(2)))))
  }
  a <- run()
  b <- run()
  expect_length(a, 12L)
  expect_identical(a, b)
  # each mirai has its own stream
  expect_length(unique(a), 12L)
  c <- (function() {
    daemons(1, dispatcher = FALSE, seed = 1234)
    on.exit(daemons(0))
    unlist(collect_mirai(lapply(1:6, function(i) mirai(runif(2)))))
  })()
  # whichever daemon runs them
  expect_identical(a, c)
  d <- (function() {
    daemons(2, dispatcher = FALSE, seed = 99)
    on.exit(daemons(0))
    unlist(collect_mirai(lapply(1:6, function(i) mirai(runif(2)))))
  })()
  expect_false(identical(a, d))
  # with sync too
  s1 <- with(daemons(sync = TRUE, seed = 7), mirai(runif(3))[])
  s2 <- with(daemons(sync = TRUE, seed = 7), mirai(runif(3))[])
  expect_identical(s1, s2)
})

test_that("without a seed each daemon has its own stream", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  res <- collect_mirai(lapply(1:2, function(i) mirai(list(Sys.getpid(), RNGkind()[1L], runif(1)))))
  expect_false(identical(res[[1]][[1]], res[[2]][[1]]))
  expect_identical(res[[1]][[2]], "L'Ecuyer-CMRG")
  expect_false(identical(res[[1]][[3]], res[[2]][[3]]))
})

test_that("nextstream(), nextget() and nextcode()", {
  expect_null(nextstream())
  expect_null(nextget("url"))
  daemons(url = local_url(), dispatcher = FALSE)
  on.exit(daemons(0))
  s1 <- nextstream()
  s2 <- nextstream()
  expect_type(s1, "integer")
  expect_length(s1, 7L)
  expect_length(s2, 7L)
  expect_false(identical(s1, s2))
  expect_identical(s2, parallel::nextRNGStream(s1))
  expect_type(nextget("url"), "character")
  expect_error(nextget(1))
  expect_match(nextcode(0L), "^0 \\| ")
  expect_identical(nextcode(1L), "1 | Daemon idletime limit reached")
  expect_identical(nextcode(2L), "2 | Daemon walltime limit reached")
  expect_identical(nextcode(3L), "3 | Daemon task limit reached")
  expect_type(nextcode(99L), "character")
})

test_that("status(), info() and daemons_set() have the documented shapes", {
  expect_false(daemons_set())
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  expect_null(info())
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  s <- status()
  expect_type(s, "list")
  expect_true(all(c("connections", "daemons") %in% names(s)))
  expect_identical(s$connections, 2L)
  expect_type(s$daemons, "character")
  i <- info()
  expect_type(i, "integer")
  expect_identical(names(i), c("connections", "cumulative", "awaiting", "executing", "completed"))
  expect_identical(i[["connections"]], 2L)
  expect_identical(i[["cumulative"]], 2L)
  expect_true(daemons_set())
  expect_false(daemons_set(.compute = "other"))
  expect_null(info(.compute = "other"))
})

test_that("with(daemons(...), expr) evaluates with the daemons then resets", {
  expect_false(daemons_set())
  res <- with(daemons(1, dispatcher = FALSE), {
    expect_true(daemons_set())
    list(pid = mirai(Sys.getpid())[], val = mirai(x * 2, x = 21)[])
  })
  expect_identical(res$val, 42)
  expect_false(res$pid == Sys.getpid())
  expect_false(daemons_set())
  expect_true(wait_for(function() !pid_alive(res$pid), timeout = 2))
  # also on error
  expect_error(with(daemons(1, dispatcher = FALSE), stop("inside with")), "inside with")
  expect_false(daemons_set())
})

test_that("everywhere() sets state on every daemon, kept despite cleanup", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  mp <- everywhere({
    where_pid <<- Sys.getpid() # `<<-`: the expression is evaluated in a local env
    options(mirai.test.option = "set")
  }, shared_obj = "shared")
  expect_s3_class(mp, "mirai_map")
  expect_length(mp, 2L)
  expect_false(any(vapply(collect_mirai(mp), is_error_value, logical(1L))))
  res <- collect_mirai(lapply(1:6, function(i) mirai(list(
    pid = Sys.getpid(),
    where_pid = where_pid,
    obj = shared_obj,
    opt = getOption("mirai.test.option")
  ))))
  pids <- vapply(res, `[[`, integer(1L), "pid")
  expect_length(unique(pids), 2L)
  for (r in res) {
    expect_identical(r$where_pid, r$pid)
    expect_identical(r$obj, "shared")
    expect_identical(r$opt, "set")
  }
  # packages loaded everywhere stay attached
  everywhere(library(tools))
  attached <- unlist(collect_mirai(lapply(1:4, function(i) mirai("package:tools" %in% search()))))
  expect_true(all(attached))
})

test_that("cleanup restores globals, options and packages between tasks", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  mirai({
    leaked_global <<- 1
    options(mirai.leak = TRUE)
    library(tools)
    NULL
  }, passed_global = 2)[]
  res <- mirai(list(
    exists("leaked_global"), exists("passed_global"),
    getOption("mirai.leak"), "package:tools" %in% search()
  ))[]
  expect_identical(res, list(FALSE, FALSE, NULL, FALSE))
})

test_that("cleanup = FALSE keeps state between tasks", {
  daemons(1, dispatcher = FALSE, cleanup = FALSE)
  on.exit(daemons(0))
  mirai({
    leaked_global <<- 1
    options(mirai.leak = TRUE)
    NULL
  }, passed_global = 2)[]
  expect_identical(mirai(list(leaked_global, passed_global, getOption("mirai.leak")))[],
                   list(1, 2, TRUE))
})

test_that("a host reset right after it starts listening stops listening", {
  # Regression: closing must stop the accept loop even if it has not yet
  # started waiting for the shutdown signal.
  rebound <- logical(100L)
  for (i in seq_along(rebound)) {
    daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
    url <- status()$daemons
    daemons(0)
    rebound[i] <- tryCatch({
      daemons(url = url, dispatcher = FALSE)
      TRUE
    }, error = function(e) FALSE)
    daemons(0)
  }
  expect_true(all(rebound))
})

test_that("tasks submitted before any daemon connects wait for one", {
  daemons(url = local_url(), dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai(Sys.getpid())
  timed <- mirai(1, .timeout = 200)
  Sys.sleep(0.5)
  expect_true(unresolved(m))
  # a queued task times out too
  expect_identical(unclass(timed$data), 5L)
  launch_local(1)
  pid <- m[]
  expect_type(pid, "integer")
  expect_false(pid == Sys.getpid())
  # queued tasks are reset with the profile
  daemons(url = local_url(), dispatcher = FALSE)
  q <- mirai(1)
  daemons(0)
  expect_identical(unclass(q$data), 19L)
})

test_that("a result arriving after the timeout does not replace errorValue 5", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai({
    Sys.sleep(0.4)
    "late"
  }, .timeout = 100)
  expect_identical(unclass(m[]), 5L)
  Sys.sleep(0.8)
  expect_identical(unclass(m$data), 5L)
  expect_identical(mirai("next")[], "next")
})

test_that("many tasks come back complete and in the right places", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  ms <- lapply(1:500, function(i) mirai(i * 2L, i = i))
  expect_identical(unlist(collect_mirai(ms)), (1:500) * 2L)
  mp <- mirai_map(1:300, function(x) x^2)
  expect_identical(mp[.flat], (1:300)^2)
})
