# Faults: daemons dying, hosts dying, hostile peers, version mismatches.

test_that("a daemon killed mid-task resolves its mirai to errorValue 19", {
  daemons(1, dispatcher = FALSE, .compute = "victim")
  on.exit(daemons(0, .compute = "victim"))
  pid <- mirai(Sys.getpid(), .compute = "victim")[]
  started <- tempfile()
  m <- mirai({
    file.create(started)
    Sys.sleep(10)
    1
  }, started = started, .compute = "victim")
  expect_true(wait_for(function() file.exists(started)))
  expect_true(unresolved(m))
  t0 <- Sys.time()
  tools::pskill(pid, tools::SIGKILL)
  expect_true(wait_for(function() !unresolved(m), timeout = 5))
  expect_lt(elapsed(t0), 5)
  expect_s3_class(m$data, "errorValue")
  expect_identical(unclass(m$data), 19L)
  expect_true(wait_conn(0, timeout = 5, .compute = "victim"))
  expect_true(wait_for(function() !pid_alive(pid), timeout = 5))
  # the session carries on
  daemons(1, dispatcher = FALSE, .compute = "victim")
  expect_identical(mirai(x + 1, x = 1, .compute = "victim")[], 2)
  expect_false(mirai(Sys.getpid(), .compute = "victim")[] == pid)
})

test_that("a daemon dying disturbs nothing else", {
  daemons(2, dispatcher = FALSE)
  on.exit(daemons(0))
  f <- tempfile()
  m1 <- mirai({
    writeLines(as.character(Sys.getpid()), f)
    Sys.sleep(10)
    "never"
  }, f = f)
  m2 <- mirai({
    Sys.sleep(1)
    "survivor"
  })
  expect_true(wait_for(function() file.exists(f) && length(readLines(f, warn = FALSE)) == 1L, timeout = 10))
  victim <- as.integer(readLines(f))
  tools::pskill(victim, tools::SIGKILL)
  expect_true(wait_for(function() !unresolved(m1), timeout = 5))
  expect_identical(unclass(m1$data), 19L)
  expect_identical(m2[], "survivor")
  expect_true(wait_conn(1, timeout = 5))
  survivor_pid <- mirai(Sys.getpid())[]
  expect_false(survivor_pid == victim)
  expect_identical(mirai("again")[], "again")
})

test_that("daemons exit within 2 seconds when their host is killed", {
  host <- r_process(paste(
    "library(mirai)",
    "daemons(2, dispatcher = FALSE)",
    "pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai(Sys.getpid())))))",
    "cat(paste('PID', pids), sep = '\\n')",
    "cat('READY\\n')",
    "Sys.sleep(60)",
    sep = "; "
  ))
  on.exit(kill_process(host))
  lines <- read_lines_until(host, function(l) any(l == "READY"), timeout = 30)
  expect_true(any(lines == "READY"))
  pids <- as.integer(sub("PID ", "", grep("^PID ", lines, value = TRUE)))
  on.exit(for (p in pids) if (pid_alive(p)) tools::pskill(p, tools::SIGKILL), add = TRUE)
  expect_length(pids, 2L)
  expect_true(all(vapply(pids, pid_alive, logical(1L))))
  host$kill()
  t0 <- Sys.time()
  gone <- wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 2)
  expect_true(gone)
})

test_that("a daemon busy in a long task exits within 2 seconds when its host is killed", {
  host <- r_process(paste(
    "library(mirai)",
    "daemons(1, dispatcher = FALSE)",
    "cat('PID', mirai(Sys.getpid())[], '\\n')",
    sprintf("f <- '%s'", tempfile()),
    "m <- mirai({file.create(f); Sys.sleep(30)}, f = f)",
    "while (!file.exists(f)) Sys.sleep(0.02)",
    "cat('BUSY\\n')",
    "Sys.sleep(60)",
    sep = "; "
  ))
  on.exit(kill_process(host))
  lines <- read_lines_until(host, function(l) any(grepl("BUSY", l)), timeout = 30)
  expect_true(any(grepl("BUSY", lines)))
  pid <- as.integer(trimws(sub("PID", "", grep("^PID", lines, value = TRUE))))
  on.exit(if (length(pid) && pid_alive(pid)) tools::pskill(pid, tools::SIGKILL), add = TRUE)
  expect_length(pid, 1L)
  expect_true(pid_alive(pid))
  host$kill()
  expect_true(wait_for(function() !pid_alive(pid), timeout = 2))
})

test_that("hostile bytes at a listening URL are dropped without harm to the host", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  url <- status()$daemons
  hostname <- url_host(url)
  port <- url_port(url)
  launch_local(1)
  expect_true(wait_conn(1, timeout = 10))
  pid <- mirai(Sys.getpid())[]
  m <- mirai({
    Sys.sleep(2.5)
    42L
  })
  open_peer <- function() socketConnection(hostname, port, open = "r+b", blocking = TRUE, timeout = 15)
  host_answers <- function() {
    t0 <- Sys.time()
    s <- status()
    expect_lt(elapsed(t0), 1)
    expect_identical(s$connections, 1L)
  }
  # a peer that never says anything: dropped after the handshake timeout
  silent <- open_peer()
  on.exit(try(close(silent), silent = TRUE), add = TRUE)
  silent_opened <- Sys.time()

  # random bytes
  con <- open_peer()
  writeBin(as.raw(c(0xAB, 0xCD, 0x13, 0x37, 0xFE, 0xED, 0xFA, 0xCE, 0x99,
                    sample(0:255, 200, replace = TRUE))), con)
  flush(con)
  expect_true(peer_closed(con, timeout = 5))
  close(con)
  host_answers()

  # a truncated frame: the header announces 100 bytes, 10 come, then close
  con <- open_peer()
  writeBin(c(as.raw(1), u64_le(100), as.raw(1:10)), con)
  flush(con)
  close(con)
  host_answers()

  # an oversized length prefix
  con <- open_peer()
  writeBin(c(as.raw(1), rep(as.raw(0xFF), 8)), con)
  flush(con)
  expect_true(peer_closed(con, timeout = 5))
  close(con)
  host_answers()

  # a well-formed HELLO with the wrong protocol version: refused with a reason
  hello <- hello_bytes(protocol = 99L)
  con <- open_peer()
  writeBin(frame_bytes(1, hello), con)
  flush(con)
  header <- readBin(con, "raw", 9L)
  expect_length(header, 9L)
  expect_identical(header[1L], as.raw(3)) # REJECT
  len <- sum(as.integer(header[2:9]) * 256^(0:7))
  expect_true(len > 0 && len < 4096)
  reason <- rawToChar(readBin(con, "raw", len))
  expect_match(reason, "version mismatch")
  expect_true(peer_closed(con, timeout = 5))
  close(con)
  host_answers()

  # a peer passing the handshake, then speaking nonsense, is dropped again
  con <- open_peer()
  handshake_as_daemon(con)
  # a host without dispatcher welcomes with an empty set-up
  welcome <- read_welcome(con)
  expect_identical(welcome$flags, 0L)
  expect_null(welcome$stream)
  expect_true(wait_conn(2, timeout = 5))
  writeBin(frame_bytes(99, as.raw(1:20)), con)
  flush(con)
  expect_true(peer_closed(con, timeout = 5))
  close(con)
  expect_true(wait_conn(1, timeout = 5))

  # the running task completes correctly and new tasks run on the daemon
  expect_identical(m[], 42L)
  expect_identical(mirai(Sys.getpid())[], pid)
  expect_identical(mirai(x * 2L, x = 21L)[], 42L)

  # the silent peer has been dropped by now (within the handshake timeout)
  expect_true(peer_closed(silent, timeout = max(1, 15 - elapsed(silent_opened))))
  host_answers()
})

test_that("a dispatcher's WELCOME gives each daemon the next random-number stream", {
  s0 <- s0_predicted()
  daemons(url = "tcp://127.0.0.1:0")
  on.exit(daemons(0))
  url <- status()$daemons
  cons <- list()
  on.exit(for (con in cons) try(close(con), silent = TRUE), add = TRUE, after = FALSE)
  # the k-th daemon to connect gets N^k(S0)
  for (k in 1:2) {
    con <- socketConnection(url_host(url), url_port(url), open = "r+b", blocking = TRUE, timeout = 15)
    cons[[k]] <- con
    handshake_as_daemon(con)
    welcome <- read_welcome(con)
    expect_identical(welcome$flags, 1L)
    expect_identical(welcome$stream, nrs(s0, k))
    expect_true(wait_conn(k, timeout = 5))
  }
  # the played daemons leaving do not disturb the host: a real one serves,
  # with the third stream
  for (con in cons) close(con)
  cons <- list()
  expect_true(wait_conn(0, timeout = 5))
  launch_local(1)
  expect_identical(mirai(.Random.seed)[], nrs(s0, 3L))
})

test_that("a daemon of a different version is refused and exits with a clear message", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  url <- status()$daemons
  launch_local(1)
  expect_true(wait_conn(1, timeout = 10))
  before <- info()
  p <- r_process(sprintf('mirai::daemon("%s", dispatcher = FALSE)', url),
                 env = c(MIRAI_ADVERTISED_VERSION = "1.0.0"))
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_for(function() !p$is_alive(), timeout = 15))
  expect_false(identical(p$get_exit_status(), 0L))
  err <- paste(p$read_all_error_lines(), collapse = "\n")
  expect_match(err, "version mismatch")
  expect_match(err, "1.0.0", fixed = TRUE)
  expect_identical(status()$connections, 1L)
  expect_identical(info()[["cumulative"]], before[["cumulative"]])
  expect_identical(mirai("still fine")[], "still fine")
})

test_that("daemons and ephemeral processes exit when their host session ends normally", {
  f <- tempfile()
  host <- r_process(paste(
    "library(mirai)",
    "daemons(2, dispatcher = FALSE)",
    "pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai(Sys.getpid())))))",
    "m <- mirai(Sys.sleep(30))",
    sprintf("eph <- mirai({writeLines(as.character(Sys.getpid()), f); Sys.sleep(30)}, f = '%s', .compute = 'none')", f),
    sprintf("while (!file.exists('%s') || !length(readLines('%s', warn = FALSE))) Sys.sleep(0.05)", f, f),
    sprintf("cat(paste('PID', c(pids, as.integer(readLines('%s')))), sep = '\\n')", f),
    "cat('EXITING\\n')",
    sep = "; "
  ))
  on.exit(kill_process(host))
  lines <- read_lines_until(host, function(l) any(l == "EXITING"), timeout = 30)
  pids <- as.integer(sub("PID ", "", grep("^PID ", lines, value = TRUE)))
  on.exit(for (p in pids) if (pid_alive(p)) tools::pskill(p, tools::SIGKILL), add = TRUE)
  expect_length(pids, 3L)
  expect_true(wait_for(function() !host$is_alive(), timeout = 10))
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 2))
})
