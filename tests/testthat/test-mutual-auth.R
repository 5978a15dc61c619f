# The handshake authenticates the host too: a daemon holding a secret
# serves only a host that proves it knows it. Each rogue host below is a
# plain R socket server that plays the host's side by hand.

# A TASK frame (kind 4: id u64, flags u8, serialized task) whose task
# creates `path` when evaluated.
rogue_task <- function(path) {
  task <- list(._expr_. = bquote(file.create(.(path))))
  frame_bytes(4, c(u64_le(1), as.raw(0), serialize(task, NULL)))
}

# Start a rogue host on a free loopback port and a daemon dialling it (in
# its own R process, with the suite's MIRAI_SECRET); `play(con, hello)`
# plays the host once the daemon's HELLO is read. Returns the daemon
# process (ended) and what the daemon printed on stderr.
against_rogue_host <- function(play) {
  skip_if_not_installed("processx")
  port <- url_port(free_tcp_url())
  server <- serverSocket(port)
  on.exit(close(server))
  p <- r_process(sprintf('mirai::daemon("tcp://127.0.0.1:%d")', port),
                 env = c(MIRAI_SECRET = TEST_SECRET))
  on.exit(kill_process(p), add = TRUE)
  con <- socketAccept(server, blocking = TRUE, open = "r+b", timeout = 30)
  on.exit(close(con), add = TRUE, after = FALSE)
  hello <- read_frame(con)
  expect_identical(hello$kind, 1L)
  play(con, hello)
  exited <- wait_for(function() !p$is_alive(), timeout = 20)
  list(exited = exited, status = if (exited) p$get_exit_status(),
       stderr = if (exited) p$read_all_error() else "")
}

# Play a host that sends CHALLENGE `body`, then reads what the daemon
# answers (into `answer$frame`) and sends WELCOME and a task anyway.
challenge_then_task <- function(con, body, ran, answer) {
  writeBin(frame_bytes(9, body), con)
  flush(con)
  answer$frame <- read_frame(con)
  try(silent = TRUE, {
    writeBin(c(frame_bytes(2, as.raw(0)), rogue_task(ran)), con)
    flush(con)
  })
}

refusal <- "the host at tcp://127.0.0.1:[0-9]+ did not prove it knows the secret: refusing it"

test_that("a daemon refuses a host that skips the challenge, and runs none of its tasks", {
  ran <- tempfile("rogue-task-ran-")
  out <- against_rogue_host(function(con, hello) {
    # WELCOME straight after HELLO, then a task anyway
    writeBin(c(frame_bytes(2, as.raw(0)), rogue_task(ran)), con)
    flush(con)
  })
  expect_true(out$exited)
  expect_false(identical(out$status, 0L))
  expect_match(out$stderr, refusal)
  expect_false(file.exists(ran))
})

test_that("a daemon refuses a host whose challenge carries a wrong proof", {
  ran <- tempfile("rogue-task-ran-")
  answer <- new.env()
  out <- against_rogue_host(function(con, hello) {
    # the daemon's nonce is the last 32 bytes of its HELLO
    expect_length(hello$body, 6L + 3L + length(charToRaw(as.character(packageVersion("mirai")))) + 32L)
    # the daemon must not answer with its own proof, only hang up
    challenge_then_task(con, c(random_nonce(), random_nonce()), ran, answer)
  })
  expect_null(answer$frame)
  expect_true(out$exited)
  expect_false(identical(out$status, 0L))
  expect_match(out$stderr, refusal)
  expect_false(file.exists(ran))
})

test_that("a daemon refuses a host that reflects a proof it was not given", {
  ran <- tempfile("rogue-task-ran-")
  answer <- new.env()
  out <- against_rogue_host(function(con, hello) {
    # a host's proof that is right in all but its direction: the daemon's
    # own proof for these nonces (computed here with the secret)
    d <- utils::tail(hello$body, 32L)
    h <- random_nonce()
    reflected <- .Call(mirai:::wrap__handshake_proof, TEST_SECRET, d, h)
    challenge_then_task(con, c(h, reflected), ran, answer)
  })
  expect_null(answer$frame)
  expect_true(out$exited)
  expect_match(out$stderr, refusal)
  expect_false(file.exists(ran))
})

test_that("the real host and its daemons still complete the mutual handshake", {
  daemons(2)
  on.exit(daemons(0))
  expect_true(wait_conn(2, timeout = 20))
  expect_identical(mirai(21 * 2)[], 42)
  daemons(0)
  # without the suite's secret: each profile's own random one
  Sys.unsetenv("MIRAI_SECRET")
  on.exit(Sys.setenv(MIRAI_SECRET = TEST_SECRET), add = TRUE)
  daemons(1, dispatcher = FALSE)
  expect_false(identical(mirai(Sys.getpid())[], Sys.getpid()))
})
