# SPEC 4.1 URLs, 4.2 TLS (and the [EXT] mutual authentication),
# local_url(), host_url(); Deviations 5.

# Start a daemon process dialling `url`.
dial_daemon <- function(url, args = "", env = NULL, frame = parent.frame()) {
  p <- r_process(sprintf("mirai::daemon(%s%s)", deparse(url), if (nzchar(args)) paste0(", ", args) else ""), env = env)
  spec_defer(kill_process(p), frame = frame)
  p
}

test_that("local_url() and host_url() formats", {
  expect_match(local_url(), "^abstract://[0-9a-f]{24}$")
  expect_false(identical(local_url(), local_url()))
  expect_identical(local_url(tcp = TRUE), "tcp://127.0.0.1:0")
  expect_identical(local_url(TRUE, 5555), "tcp://127.0.0.1:5555")
  expect_identical(local_url(TRUE, 5555.9), "tcp://127.0.0.1:5555")
  h <- host_url()
  expect_type(h, "character")
  expect_true(length(h) >= 1L)
  if (!is.null(names(h))) {
    expect_true(all(grepl("^tcp://[0-9.]+:0$", h)))
    expect_false(any(grepl("^tcp://127\\.", h)))
  } else {
    expect_identical(h, sprintf("tcp://%s:0", Sys.info()[["nodename"]]))
  }
  expect_true(all(startsWith(host_url(tls = TRUE), "tls+tcp://")))
  expect_true(all(endsWith(host_url(port = 5555), ":5555")))
  expect_identical(names(host_url(port = 1)), names(h))
})

test_that("port 0 is replaced by the assigned port everywhere", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = disp)
    url <- status()$daemons
    expect_match(url, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
    expect_false(endsWith(url, ":0"))
    expect_identical(nextget("url"), url)
    expect_match(launch_remote(1), sprintf("mirai::daemon(\"%s\"", url), fixed = TRUE)
    dial_daemon(url, sprintf("dispatcher = %s", disp))
    expect_true(wait_conn(1, timeout = 20))
    daemons(0)
  }
})

test_that("an empty or * host listens on all interfaces; the host stays empty", {
  for (u in c("tcp://:0", "tcp://*:0")) {
    for (disp in c(TRUE, FALSE)) {
      spec_daemons(url = u, dispatcher = disp)
      url <- status()$daemons
      expect_match(url, "^tcp://:[0-9]+$")
      expect_false(endsWith(url, ":0"))
      expect_identical(nextget("url"), url)
      dial_daemon(sprintf("tcp://127.0.0.1:%d", url_port(url)), sprintf("dispatcher = %s", disp))
      expect_true(wait_conn(1, timeout = 20))
      expect_identical(mirai("all interfaces")[], "all interfaces")
      daemons(0)
    }
  }
  # websocket and TLS carriers the same; a launched daemon dials the
  # host-less URL and the TLS certificate made for it is accepted
  for (u in c("ws://:0", "tls+tcp://:0")) {
    for (disp in c(TRUE, FALSE)) {
      spec_daemons(url = u, dispatcher = disp)
      url <- status()$daemons
      prefix <- sub("0$", "", u)
      expect_true(startsWith(url, prefix))
      expect_match(substring(url, nchar(prefix) + 1L), "^[0-9]+$")
      expect_identical(nextget("url"), url)
      launch_local(1)
      expect_true(wait_conn(1, timeout = 20))
      expect_identical(mirai(x, x = u)[], u)
      daemons(0)
    }
  }
})

test_that("IPv6 hosts in brackets", {
  skip_if_not(has_ipv6_loopback(), "no IPv6 loopback")
  skip_if_upstream("upstream (nanonext 1.10.4) fails to listen here: \"268435447 | Unknown error #268435447\"")
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(url = "tcp://[::1]:0", dispatcher = disp)
    url <- status()$daemons
    expect_match(url, "^tcp://\\[::1\\]:[0-9]+$")
    expect_false(endsWith(url, ":0"))
    dial_daemon(url, sprintf("dispatcher = %s", disp))
    expect_true(wait_conn(1, timeout = 20))
    expect_identical(mirai("v6")[], "v6")
    daemons(0)
  }
})

test_that("websocket URLs keep their path; daemons connect", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(url = "ws://127.0.0.1:0/spec/path", dispatcher = disp)
    url <- status()$daemons
    expect_match(url, "^ws://127\\.0\\.0\\.1:[0-9]+/spec/path$")
    expect_identical(nextget("url"), url)
    launch_local(1)
    expect_true(wait_conn(1, timeout = 20))
    expect_identical(mirai("ws")[], "ws")
    daemons(0)
  }
})

test_that("TLS: tls+tcp and wss with an auto-generated certificate", {
  for (u in c("tls+tcp://127.0.0.1:0", "wss://127.0.0.1:0/tls")) {
    spec_daemons(url = u)
    tls <- nextget("tls")
    expect_length(tls, 2L)
    expect_identical(tls[2L], "")
    expect_true(grepl("BEGIN CERTIFICATE", tls[1L], fixed = TRUE))
    expect_false(grepl("PRIVATE KEY", tls[1L], fixed = TRUE))
    launch_local(1)
    expect_true(wait_conn(1, timeout = 20))
    expect_identical(mirai("secure")[], "secure")
    daemons(0)
  }
})

test_that("TLS: a daemon with the wrong certificate is never counted", {
  spec_daemons(url = "tls+tcp://127.0.0.1:0", .compute = "spec-tls-other")
  other <- nextget("tls", .compute = "spec-tls-other")
  spec_daemons(url = "tls+tcp://127.0.0.1:0", dispatcher = FALSE)
  url <- nextget("url")
  p <- dial_daemon(url, sprintf("dispatcher = FALSE, tlscert = c(%s, \"\")", deparse(other[1L])))
  expect_false(wait_for(function() status()$connections > 0L, timeout = 3))
  # the right certificate is accepted
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
})

test_that("ipc and abstract URLs", {
  path <- tempfile("spec-ipc")
  spec_daemons(url = paste0("ipc://", path))
  expect_identical(status()$daemons, paste0("ipc://", path))
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("ipc")[], "ipc")
  daemons(0)
  abs <- sprintf("abstract://spec-%s", paste(sample(letters, 12, TRUE), collapse = ""))
  spec_daemons(url = abs, dispatcher = FALSE)
  expect_identical(status()$daemons, abs)
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("abstract")[], "abstract")
})

test_that("[EXT] listening on an ipc path naming an ordinary file fails and leaves the file alone", {
  spec_reset_on_exit()
  skip_if_upstream("[EXT] not an upstream guarantee")
  f <- tempfile("spec-ordinary")
  writeLines(c("precious", "data"), f)
  before <- file.info(f)
  for (disp in c(TRUE, FALSE)) {
    e <- catch_cnd(daemons(url = paste0("ipc://", f), dispatcher = disp))
    expect_false(is.null(e))
    expect_match(conditionMessage(e), "^[0-9]+ \\| ")
    expect_false(daemons_set())
    expect_true(file.exists(f))
    expect_identical(readLines(f), c("precious", "data"))
    expect_identical(file.info(f)$size, before$size)
  }
})

test_that("[EXT] a daemon without the profile's secret is refused and counted", {
  skip_if_upstream("[EXT] mutual authentication")
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = disp)
    url <- nextget("url")
    p <- dial_daemon(url, sprintf("dispatcher = %s, asyncdial = TRUE", disp), env = c(MIRAI_SECRET = "not-the-secret"))
    expect_true(wait_for(function() identical(status()$refused, 1L) || isTRUE(status()$refused >= 1L), timeout = 20))
    expect_identical(status()$connections, 0L)
    # a task is not given to it
    m <- mirai("never run there", .timeout = 500)
    expect_identical(unclass(m[]), 5L)
    kill_process(p)
    daemons(0)
  }
})

test_that("[EXT] the secret never appears on a local daemon's command line", {
  skip_if_upstream("[EXT] mutual authentication")
  spec_daemons(1)
  pid <- mirai(Sys.getpid())[]
  cl <- proc_cmdline(pid)
  expect_false(grepl(Sys.getenv("MIRAI_SECRET"), cl, fixed = TRUE))
})
