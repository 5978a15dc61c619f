# Shared helpers for the mirai test suite.

# Hosts take their secret from MIRAI_SECRET when it is set: with one for the
# whole suite, daemons started by hand (which inherit this environment) are
# admitted, and daemons can be started before their host. Tests of the
# random per-profile secret unset it.
TEST_SECRET <- "mirai-test-suite-secret-3f9c2e7a51d84b06"
Sys.setenv(MIRAI_SECRET = TEST_SECRET)

# The protocol version of this build (src/rust/src/protocol/handshake.rs).
PROTOCOL_VERSION <- 7L

# A handshake (HELLO body) as a daemon of this version sends it, ending in
# the daemon's 32-byte nonce.
hello_bytes <- function(protocol = PROTOCOL_VERSION, nonce = random_nonce()) {
  version <- charToRaw(as.character(utils::packageVersion("mirai")))
  c(charToRaw("MIRAI"), as.raw(0), as.raw(c(protocol, 0)), as.raw(length(version)), version,
    nonce)
}

# 32 bytes for a nonce (unpredictable enough for a test peer).
random_nonce <- function() as.raw(sample.int(256L, 32L, replace = TRUE) - 1L)

# Play a daemon's handshake on socket connection `con`: HELLO with a nonce,
# then read the host's CHALLENGE (its nonce and its proof) and answer it
# with the daemon's proof for `secret`. Returns the host's nonce.
handshake_as_daemon <- function(con, secret = TEST_SECRET) {
  nonce <- random_nonce()
  writeBin(frame_bytes(1, hello_bytes(nonce = nonce)), con)
  flush(con)
  header <- readBin(con, "raw", 9L)
  stopifnot(length(header) == 9L, header[1L] == as.raw(9)) # CHALLENGE
  challenge <- readBin(con, "raw", 64L)
  stopifnot(length(challenge) == 64L)
  host_nonce <- challenge[1:32]
  writeBin(frame_bytes(10, .Call(mirai:::wrap__handshake_proof, secret, nonce, host_nonce)), con)
  flush(con)
  host_nonce
}

# Read a frame (kind, then u64 LE length, then body) from socket connection
# `con`; returns list(kind, body), or NULL at end of stream.
read_frame <- function(con) {
  header <- readBin(con, "raw", 9L)
  if (length(header) < 9L) return(NULL)
  len <- sum(as.numeric(header[2:9]) * 256^(0:7))
  body <- if (len > 0) readBin(con, "raw", len) else raw(0)
  list(kind = as.integer(header[1L]), body = body)
}

# Read the host's WELCOME (kind 2) on `con`: its body is a flags byte and,
# with flag 1 (a dispatcher), the daemon's random-number stream (7
# little-endian int32). Returns list(flags, stream), stream NULL if absent.
read_welcome <- function(con) {
  f <- read_frame(con)
  stopifnot(!is.null(f), f$kind == 2L, length(f$body) >= 1L)
  flags <- as.integer(f$body[1L])
  stream <- if (bitwAnd(flags, 1L)) {
    stopifnot(length(f$body) == 29L)
    readBin(f$body[-1L], "integer", 7L, size = 4L, endian = "little")
  }
  list(flags = flags, stream = stream)
}

# Poll `cond()` until it is TRUE or `timeout` seconds pass; returns whether
# it became TRUE.
wait_for <- function(cond, timeout = 10, interval = 0.02) {
  deadline <- Sys.time() + timeout
  repeat {
    if (isTRUE(cond())) return(TRUE)
    if (Sys.time() > deadline) return(FALSE)
    Sys.sleep(interval)
  }
}

# Whether a process with this pid exists (and is not a zombie).
pid_alive <- function(pid) {
  if (!dir.exists("/proc")) return(isTRUE(tools::pskill(pid, 0L)))
  f <- sprintf("/proc/%d/stat", as.integer(pid))
  if (!file.exists(f)) return(FALSE)
  # the process may end between the check and the read
  st <- tryCatch(suppressWarnings(readLines(f, warn = FALSE)), error = function(e) "")
  if (!length(st) || !nzchar(st[1L])) return(FALSE)
  # field 3 (after the parenthesised command) is the state; Z = zombie
  state <- sub("^.*\\) ([A-Za-z]).*$", "\\1", st[1L])
  !identical(state, "Z")
}

# Seconds since `t0` (a Sys.time()).
elapsed <- function(t0) as.numeric(difftime(Sys.time(), t0, units = "secs"))

# Connections of a profile.
n_conn <- function(.compute = NULL) status(.compute = .compute)$connections

# Wait until a profile has exactly `n` connections.
wait_conn <- function(n, timeout = 10, .compute = NULL)
  wait_for(function() n_conn(.compute) == n, timeout)

rscript <- function() file.path(R.home("bin"), "Rscript")

# Start an R subprocess running `code` (a character string) via processx.
r_process <- function(code, env = NULL, stdout = "|", stderr = "|") {
  skip_if_not_installed("processx")
  processx::process$new(
    rscript(), c("--vanilla", "-e", code),
    stdout = stdout, stderr = stderr,
    env = if (is.null(env)) NULL else c("current", env),
    cleanup = TRUE, cleanup_tree = TRUE
  )
}

# Read stdout lines of a processx process until `pred(lines)` holds or the
# timeout passes; returns all lines read.
read_lines_until <- function(p, pred, timeout = 20) {
  lines <- character()
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    p$poll_io(100)
    lines <- c(lines, p$read_output_lines())
    if (pred(lines)) break
    if (!p$is_alive()) {
      lines <- c(lines, p$read_output_lines())
      break
    }
  }
  lines
}

# Kill a processx process (and its tree) if still running.
kill_process <- function(p) {
  if (!is.null(p) && p$is_alive()) try(p$kill_tree(), silent = TRUE)
  invisible()
}

# Host and port of a tcp:// URL.
url_port <- function(url) as.integer(sub("^.*:([0-9]+)$", "\\1", url))
url_host <- function(url) sub("^tcp://\\[?([^]]*?)\\]?:[0-9]+$", "\\1", url)

# Whether a socket connection has been closed by the peer: reading from it
# hits EOF (zero bytes) rather than blocking. Uses a non-blocking poll so
# a still-open connection does not hang the test.
peer_closed <- function(con, timeout = 5) {
  wait_for(function() {
    repeat {
      r <- tryCatch(socketSelect(list(con), timeout = 0.1), error = function(e) TRUE)
      if (!isTRUE(r)) return(FALSE)
      got <- tryCatch(readBin(con, "raw", 1L), error = function(e) raw(0))
      if (length(got) == 0L) return(TRUE)
    }
  }, timeout = timeout)
}

# A frame: kind byte, u64 LE length, body.
u64_le <- function(n) {
  out <- raw(8)
  for (i in 1:8) {
    out[i] <- as.raw(n %% 256)
    n <- n %/% 256
  }
  out
}
frame_bytes <- function(kind, body) c(as.raw(kind), u64_le(length(body)), body)

# Clean up all profiles a test may have set.
reset_all <- function(profiles = c("default")) {
  for (p in profiles) daemons(0, .compute = p)
  invisible()
}

# A tcp URL on the loopback with a port that was free a moment ago.
free_tcp_url <- function() {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, .compute = "free-port-probe")
  url <- status(.compute = "free-port-probe")$daemons
  daemons(0, .compute = "free-port-probe")
  url
}

# Give R processes started until `frame` exits a user profile running `code`
# (daemons are R processes: this makes them slow, or fail, at start-up).
local_r_profile <- function(code, frame = parent.frame()) {
  profile <- tempfile(fileext = ".R")
  writeLines(code, profile)
  old <- Sys.getenv("R_PROFILE_USER", unset = NA)
  Sys.setenv(R_PROFILE_USER = profile)
  restore <- function() if (is.na(old)) Sys.unsetenv("R_PROFILE_USER") else Sys.setenv(R_PROFILE_USER = old)
  do.call(on.exit, list(as.call(list(restore)), add = TRUE), envir = frame)
  invisible(profile)
}

# The index part of the error a map's `.stop` raises for element `i` (SPEC
# 2.4): an rlang bullet when mirai uses cli, the plain form otherwise.
has_cli <- function() requireNamespace("cli", quietly = TRUE)
stop_index_text <- function(i)
  if (has_cli()) sprintf("In index: %d.", as.integer(i)) else sprintf("In index %d:", as.integer(i))

# Check `err`, the error a map's `.stop` raised at element `i` whose error
# message was `msg` (SPEC 2.4): with cli an rlang error attributed to
# mirai_map() with fields location, name and parent; without cli the plain
# "In index %d:\n%s".
expect_stop_error <- function(err, i, msg, name = NULL) {
  testthat::expect_s3_class(err, "error")
  if (has_cli()) {
    testthat::expect_s3_class(err, "rlang_error")
    testthat::expect_identical(conditionCall(err), quote(mirai_map()))
    testthat::expect_identical(err$location, as.integer(i))
    testthat::expect_identical(err$name, name)
    testthat::expect_identical(err$parent$message, msg)
    testthat::expect_match(conditionMessage(err), stop_index_text(i), fixed = TRUE)
  } else {
    testthat::expect_identical(conditionMessage(err), sprintf("In index %d:\n%s", as.integer(i), msg))
  }
}

# The error text of `.flat` for differing types (SPEC 2.4).
flat_error_text <- function(t1, t2)
  sprintf("%s outputs of differing type: %s / %s", if (has_cli()) "cannot flatten" else "Cannot flatten", t1, t2)

# Set daemons listening at `url` (which launches no local daemons, SPEC
# 3.1), launch `n` local daemons and wait until all have connected; errors
# if they do not, so a test cannot hang on tasks nobody will run.
url_daemons <- function(n, url, ..., .compute = NULL, timeout = 20) {
  daemons(url = url, ..., .compute = .compute)
  launch_local(n, .compute = .compute)
  if (!wait_conn(n, timeout = timeout, .compute = .compute))
    stop(sprintf("%d daemon(s) did not connect to %s", n, url))
  invisible(TRUE)
}
