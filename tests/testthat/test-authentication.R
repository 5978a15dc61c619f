# Daemon authentication: a host admits only daemons presenting its secret.

# Run `code` with MIRAI_SECRET unset, so hosts make a random secret.
without_test_secret <- function(code) {
  Sys.unsetenv("MIRAI_SECRET")
  on.exit(Sys.setenv(MIRAI_SECRET = TEST_SECRET))
  code
}

test_that("each profile gets its own random secret; local daemons get it", {
  without_test_secret({
    daemons(1, .compute = "a")
    daemons(1, dispatcher = FALSE, .compute = "b")
    on.exit({
      daemons(0, .compute = "a")
      daemons(0, .compute = "b")
    })
    sa <- attr(mirai:::.profile("a")$host, "secret")
    sb <- attr(mirai:::.profile("b")$host, "secret")
    expect_match(sa, "^[0-9a-f]{64}$")
    expect_false(identical(sa, sb))
    expect_identical(mirai(1 + 1, .compute = "a")[], 2)
    expect_identical(mirai(2 + 2, .compute = "b")[], 4)
    # tasks cannot read the secret from the daemon's environment
    expect_identical(mirai(Sys.getenv("MIRAI_SECRET"), .compute = "a")[], "")
    # ephemeral processes are admitted too
    expect_identical(mirai(3 + 3)[], 6)
  })
})

test_that("a daemon without the secret is refused; one with it is admitted", {
  without_test_secret({
    daemons(url = "tcp://127.0.0.1:0")
    on.exit(daemons(0))
    url <- status()$daemons
    secret <- attr(mirai:::.profile(NULL)$host, "secret")
    code <- sprintf('mirai::daemon("%s")', url)
    for (wrong in c("", "not-the-secret")) {
      p <- r_process(code, env = c(MIRAI_SECRET = wrong))
      expect_true(wait_for(function() !p$is_alive(), timeout = 15))
      expect_false(identical(p$get_exit_status(), 0L))
    }
    expect_identical(status()$connections, 0L)
    expect_gte(status()$refused, 2)
    ok <- r_process(code, env = c(MIRAI_SECRET = secret))
    on.exit(kill_process(ok), add = TRUE)
    expect_true(wait_conn(1, timeout = 15))
    expect_identical(mirai(Sys.getpid())[], ok$get_pid())
  })
})

test_that("a tcp peer without the secret gets no task and learns nothing", {
  without_test_secret({
    daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
    on.exit(daemons(0))
    url <- status()$daemons
    m <- mirai("only for a real daemon")
    con <- socketConnection(url_host(url), url_port(url), open = "r+b", blocking = TRUE,
                            timeout = 15)
    on.exit(close(con), add = TRUE)
    # a well-formed handshake of this version, answering the challenge
    # with a made-up secret: it only ever sees the random challenge
    challenge <- handshake_as_daemon(con, secret = strrep("0", 64))
    expect_length(challenge, 32L)
    reply <- readBin(con, "raw", 1024L)
    expect_length(reply, 0L) # closed without a word: no WELCOME, no reason
    expect_identical(status()$refused, 1L)
    expect_true(unresolved(m))
    launch_local(1)
    expect_identical(m[], "only for a real daemon")
  })
})

test_that("launch_remote() commands carry the secret when printed", {
  without_test_secret({
    daemons(url = "tcp://127.0.0.1:0")
    on.exit(daemons(0))
    secret <- attr(mirai:::.profile(NULL)$host, "secret")
    cmds <- launch_remote(2)
    expect_s3_class(cmds, "miraiLaunchCmd")
    expect_length(cmds, 2L)
    # the values keep the documented text, without the secret
    expect_true(all(startsWith(unclass(cmds), "Rscript -e ")))
    expect_false(any(grepl(secret, cmds, fixed = TRUE)))
    # printed, each is the shell command to run, with the secret in front
    out <- capture.output(print(cmds))
    printed <- out[startsWith(out, "MIRAI_SECRET=")]
    expect_identical(printed, paste0("MIRAI_SECRET=", secret, " ", unclass(cmds)))
    # the printed command really starts an admitted daemon (this session
    # has no MIRAI_SECRET for it to inherit)
    p <- processx::process$new("/bin/sh", c("-c", printed[1L]), cleanup = TRUE, cleanup_tree = TRUE)
    on.exit(kill_process(p), add = TRUE)
    expect_true(wait_conn(1, timeout = 15))
    expect_identical(mirai("remote", .timeout = 15000)[], "remote")
  })
})

test_that("MIRAI_SECRET set on the host is the secret; daemons outlive a host restart", {
  daemons(url = "tcp://127.0.0.1:0")
  on.exit(daemons(0))
  url <- status()$daemons
  expect_identical(attr(mirai:::.profile(NULL)$host, "secret"), TEST_SECRET)
  p <- r_process(sprintf('mirai::daemon("%s", autoexit = FALSE)', url))
  on.exit(kill_process(p), add = TRUE, after = FALSE)
  expect_true(wait_conn(1, timeout = 15))
  expect_identical(mirai(Sys.getpid())[], p$get_pid())
  daemons(0)
  daemons(url = url)
  expect_true(wait_conn(1, timeout = 15))
  expect_identical(mirai(Sys.getpid())[], p$get_pid())
})

test_that("daemon() takes MIRAI_SECRET out of the environment only while it serves", {
  # a failed dial leaves the session's secret where it was
  url <- free_tcp_url()
  expect_error(daemon(url, dispatcher = FALSE), "Connection refused", fixed = TRUE)
  expect_identical(Sys.getenv("MIRAI_SECRET"), TEST_SECRET)
  # as does a daemon that served and returned (in this session); its
  # tasks did not see the secret
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  m <- mirai(Sys.getenv("MIRAI_SECRET", unset = "unset"))
  host <- nextget("url")
  code <- daemon(host, dispatcher = FALSE, maxtasks = 1L)
  expect_identical(code, 3L)
  expect_identical(m[], "unset")
  expect_identical(Sys.getenv("MIRAI_SECRET"), TEST_SECRET)
})
