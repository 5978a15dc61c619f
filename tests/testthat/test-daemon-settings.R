# daemon() settings: maxtasks, idletime, walltime, output, autoexit,
# asyncdial, and daemon()'s exit code.

# A tcp host for profile `.compute`; returns its URL.
tcp_host <- function(.compute = NULL) {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, .compute = .compute)
  status(.compute = .compute)$daemons
}

# Rscript code running a daemon dialling `url` with extra settings (a string).
daemon_code <- function(url, settings = "", wrap = "%s") {
  call <- sprintf('mirai::daemon("%s", dispatcher = FALSE%s)', url,
                  if (nzchar(settings)) paste0(", ", settings) else "")
  sprintf(wrap, call)
}

test_that("maxtasks = 1: each daemon exits after one task", {
  daemons(2, dispatcher = FALSE, maxtasks = 1)
  on.exit(daemons(0))
  expect_identical(status()$connections, 2L)
  p1 <- mirai(Sys.getpid())[]
  expect_true(wait_conn(1, timeout = 5))
  expect_true(wait_for(function() !pid_alive(p1), timeout = 5))
  p2 <- mirai(Sys.getpid())[]
  expect_false(p1 == p2)
  expect_true(wait_conn(0, timeout = 5))
  # without dispatcher info() has no counts beyond connections
  expect_identical(info()[["connections"]], 0L)
  expect_identical(info()[["cumulative"]], NA_integer_)
})

test_that("maxtasks = 1 with dispatcher: each daemon serves one task, cumulative counts both", {
  daemons(2, maxtasks = 1)
  on.exit(daemons(0))
  ms <- list(mirai(Sys.getpid()), mirai(Sys.getpid()))
  pids <- unlist(collect_mirai(ms))
  expect_false(pids[1L] == pids[2L])
  expect_true(wait_conn(0, timeout = 5))
  expect_identical(info()[["cumulative"]], 2L)
  expect_identical(info()[["completed"]], 2L)
})

test_that("idletime: a daemon exits after being idle that long", {
  daemons(1, dispatcher = FALSE, idletime = 1500)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  # still there while in use
  expect_identical(status()$connections, 1L)
  expect_true(wait_conn(0, timeout = 10))
  expect_true(wait_for(function() !pid_alive(pid), timeout = 5))
})

test_that("walltime: a daemon exits once its running time is exceeded", {
  daemons(1, dispatcher = FALSE, walltime = 1500)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  expect_true(wait_conn(0, timeout = 10))
  expect_true(wait_for(function() !pid_alive(pid), timeout = 5))
})

test_that("daemon() returns its exit code", {
  url_a <- tcp_host(.compute = "codes_a")
  on.exit(daemons(0, .compute = "codes_a"))
  url_b <- tcp_host(.compute = "codes_b")
  on.exit(daemons(0, .compute = "codes_b"), add = TRUE)
  url_c <- tcp_host(.compute = "codes_c")
  on.exit(daemons(0, .compute = "codes_c"), add = TRUE)
  url_d <- tcp_host(.compute = "codes_d")
  on.exit(daemons(0, .compute = "codes_d"), add = TRUE)
  wrap <- 'cat("EXITCODE", %s, "\\n")'
  procs <- list(
    maxtasks = r_process(daemon_code(url_a, "maxtasks = 1", wrap)),
    idletime = r_process(daemon_code(url_b, "idletime = 300", wrap)),
    # [QUIRK] walltime shorter than idletime (Inf): an idle daemon exits
    # after walltime with the idletime code
    walltime_idle = r_process(daemon_code(url_b, "walltime = 300", wrap)),
    walltime = r_process(daemon_code(url_d, "walltime = 1500", wrap)),
    ended = r_process(daemon_code(url_c, "", wrap))
  )
  on.exit(lapply(procs, kill_process), add = TRUE)
  expect_true(wait_conn(1, timeout = 15, .compute = "codes_d"))
  # the first task outlasts the walltime; the second, already queued at the
  # daemon, is received after it: it is still run and its result delivered
  m_long <- mirai({
    Sys.sleep(2)
    "long"
  }, .compute = "codes_d")
  m_last <- mirai("last", .compute = "codes_d")
  expect_true(wait_conn(1, timeout = 15, .compute = "codes_a"))
  expect_identical(mirai(1L, .compute = "codes_a")[], 1L)
  expect_true(wait_conn(1, timeout = 15, .compute = "codes_c"))
  daemons(0, .compute = "codes_c")
  expect_identical(m_long[], "long")
  expect_identical(m_last[], "last")
  codes <- lapply(procs, function(p) {
    lines <- read_lines_until(p, function(l) any(grepl("EXITCODE", l)), timeout = 20)
    trimws(sub("EXITCODE", "", grep("EXITCODE", lines, value = TRUE)))
  })
  expect_identical(codes$maxtasks, "3")
  expect_identical(codes$idletime, "1")
  expect_identical(codes$walltime_idle, "1")
  expect_identical(codes$walltime, "2")
  expect_identical(codes$ended, "0")
  expect_identical(nextcode(as.integer(codes$walltime)), "2 | Daemon walltime limit reached")
})

test_that("output = TRUE keeps a daemon's stdout; FALSE discards it", {
  url <- tcp_host()
  on.exit(daemons(0))
  keep <- r_process(daemon_code(url, "output = TRUE"))
  drop <- r_process(daemon_code(url, "output = FALSE"))
  on.exit(kill_process(keep), add = TRUE)
  on.exit(kill_process(drop), add = TRUE)
  expect_true(wait_conn(2, timeout = 15))
  mp <- everywhere({
    cat("OUTPUT-MARKER\n")
    flush(stdout())
  })
  expect_false(any(vapply(collect_mirai(mp), is_error_value, logical(1L))))
  lines <- read_lines_until(keep, function(l) any(grepl("OUTPUT-MARKER", l)), timeout = 10)
  expect_true(any(grepl("OUTPUT-MARKER", lines)))
  daemons(0)
  expect_true(wait_for(function() !drop$is_alive(), timeout = 5))
  expect_false(any(grepl("OUTPUT-MARKER", drop$read_all_output_lines())))
})

test_that("local daemons with output = TRUE print to the host's console", {
  p <- r_process(paste(
    "library(mirai)",
    "daemons(1, dispatcher = FALSE, output = TRUE, .compute = 'a')",
    "daemons(1, dispatcher = FALSE, output = FALSE, .compute = 'b')",
    "invisible(mirai({cat('FROM-A\\n'); flush(stdout())}, .compute = 'a')[])",
    "invisible(mirai({cat('FROM-B\\n'); flush(stdout())}, .compute = 'b')[])",
    "daemons(0, .compute = 'a'); daemons(0, .compute = 'b')",
    "cat('HOST-DONE\\n')",
    sep = "; "
  ))
  on.exit(kill_process(p))
  lines <- read_lines_until(p, function(l) any(grepl("HOST-DONE", l)), timeout = 20)
  expect_true(any(grepl("HOST-DONE", lines)))
  expect_true(any(grepl("FROM-A", lines)))
  expect_false(any(grepl("FROM-B", lines)))
})

test_that("autoexit = FALSE survives the host and serves a new host at the same URL", {
  url <- tcp_host()
  on.exit(daemons(0))
  p <- r_process(daemon_code(url, "autoexit = FALSE"))
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 15))
  pid <- mirai(Sys.getpid())[]
  expect_identical(pid, p$get_pid())
  daemons(0)
  # a daemon with autoexit = TRUE would be gone within ~200 ms
  Sys.sleep(0.5)
  expect_true(p$is_alive())
  daemons(url = url, dispatcher = FALSE)
  expect_true(wait_conn(1, timeout = 10))
  expect_identical(mirai(Sys.getpid())[], pid)
  expect_identical(mirai(x * 2, x = 4)[], 8)
  # an explicit exit signal makes it exit
  daemons(NULL)
  expect_true(wait_for(function() !p$is_alive(), timeout = 5))
})

test_that("autoexit = NA finishes the task in progress; TRUE does not", {
  url_na <- tcp_host(.compute = "ae_na")
  on.exit(daemons(0, .compute = "ae_na"))
  url_true <- tcp_host(.compute = "ae_true")
  on.exit(daemons(0, .compute = "ae_true"), add = TRUE)
  p_na <- r_process(daemon_code(url_na, "autoexit = NA"))
  p_true <- r_process(daemon_code(url_true, "autoexit = TRUE"))
  on.exit(kill_process(p_na), add = TRUE)
  on.exit(kill_process(p_true), add = TRUE)
  expect_true(wait_conn(1, timeout = 15, .compute = "ae_na"))
  expect_true(wait_conn(1, timeout = 15, .compute = "ae_true"))
  f_na <- tempfile()
  f_true <- tempfile()
  s_na <- tempfile()
  s_true <- tempfile()
  task <- quote({
    file.create(s)
    Sys.sleep(1.5)
    writeLines("finished", f)
  })
  m_na <- mirai(task, f = f_na, s = s_na, .compute = "ae_na")
  m_true <- mirai(task, f = f_true, s = s_true, .compute = "ae_true")
  # both tasks are running
  expect_true(wait_for(function() file.exists(s_na) && file.exists(s_true), timeout = 10))
  t0 <- Sys.time()
  daemons(0, .compute = "ae_na")
  daemons(0, .compute = "ae_true")
  expect_identical(unclass(m_na$data), 19L)
  expect_identical(unclass(m_true$data), 19L)
  # TRUE: forced out after a short grace period, before the task is done
  expect_true(wait_for(function() !p_true$is_alive(), timeout = 2))
  # NA: exits once the task is finished
  expect_true(wait_for(function() !p_na$is_alive(), timeout = 5))
  expect_true(file.exists(f_na))
  expect_false(file.exists(f_true))
})

test_that("asyncdial = TRUE waits for the host to appear", {
  url <- free_tcp_url()
  p <- r_process(daemon_code(url, "asyncdial = TRUE", 'cat("DIALLING\\n"); %s'))
  on.exit(kill_process(p))
  lines <- read_lines_until(p, function(l) any(l == "DIALLING"), timeout = 20)
  expect_true("DIALLING" %in% lines)
  # a synchronous dial would fail at once; this one keeps trying
  Sys.sleep(0.5)
  expect_true(p$is_alive())
  daemons(url = url, dispatcher = FALSE)
  on.exit(daemons(0), add = TRUE)
  expect_true(wait_conn(1, timeout = 10))
  expect_identical(mirai(Sys.getpid())[], p$get_pid())
})

test_that("asyncdial = FALSE fails at once when no host listens", {
  url <- free_tcp_url()
  p <- r_process(daemon_code(url, "asyncdial = FALSE"))
  on.exit(kill_process(p))
  expect_true(wait_for(function() !p$is_alive(), timeout = 10))
  expect_false(identical(p$get_exit_status(), 0L))
  expect_match(paste(p$read_all_error_lines(), collapse = "\n"), url, fixed = TRUE)
})
