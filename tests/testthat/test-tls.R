# Secure and websocket transports: tls+tcp://, ws://, wss://, zero-config
# and user-supplied TLS credentials, and peers that must be refused.

# The port of any tcp-based URL (tcp, tls+tcp, ws, wss; path allowed).
any_port <- function(url) as.integer(sub("^[a-z+]+://.*:([0-9]+)(/.*)?$", "\\1", url))

# A connection to the host's port that sends nothing.
open_silent <- function(url) {
  socketConnection("127.0.0.1", any_port(url), open = "r+b", blocking = TRUE, timeout = 15)
}

test_that("zero-config tls+tcp: daemons verify the host and run tasks", {
  on.exit(daemons(0))
  for (dispatcher in c(TRUE, FALSE)) {
    url_daemons(2, "tls+tcp://127.0.0.1:0", dispatcher = dispatcher)
    url <- status()$daemons
    expect_match(url, "^tls\\+tcp://127\\.0\\.0\\.1:[0-9]+$")
    expect_gt(any_port(url), 0L)
    expect_identical(nextget("url"), url)
    ca <- attr(mirai:::.profile(NULL)$host, "tlscert")
    expect_match(ca, "^-----BEGIN CERTIFICATE-----")
    expect_identical(status()$connections, 2L)
    pids <- mirai_map(1:6, function(i) { Sys.sleep(0.1); Sys.getpid() })[]
    expect_length(unique(unlist(pids)), 2L)
    # a large vector both ways, through the encryption
    x <- runif(2e6)
    expect_identical(mirai(rev(x), x = x)[], rev(x))
    daemons(0)
  }
})

test_that("wss:// and ws:// with a path carry tasks, several daemons on one port", {
  on.exit(daemons(0))
  url_daemons(3, "ws://127.0.0.1:0/mirai/pool", dispatcher = FALSE)
  url <- status()$daemons
  expect_match(url, "^ws://127\\.0\\.0\\.1:[0-9]+/mirai/pool$")
  expect_identical(status()$connections, 3L)
  # round-robin: nine tasks reach all three daemons
  ms <- lapply(1:9, function(i) mirai(Sys.getpid()))
  expect_length(unique(vapply(ms, function(m) m[], integer(1L))), 3L)
  x <- as.raw(sample(0:255, 3e6, TRUE))
  expect_identical(mirai(x, x = x)[], x)
  daemons(0)

  url_daemons(2, "wss://127.0.0.1:0/secure")
  url <- status()$daemons
  expect_match(url, "^wss://127\\.0\\.0\\.1:[0-9]+/secure$")
  expect_identical(mirai(paste("over", "wss"))[], "over wss")
  expect_identical(mirai_map(1:4, function(i) i * 2)[.flat], c(2, 4, 6, 8))
  daemons(0)
})

test_that("zero-config certificates name hostnames and IPv6 addresses", {
  on.exit(daemons(0))
  url_daemons(1, "wss://localhost:0/by-name")
  expect_match(status()$daemons, "^wss://localhost:[0-9]+/by-name$")
  expect_identical(mirai("by name")[], "by name")
  daemons(0)
  ok <- tryCatch({
    daemons(url = "tls+tcp://[::1]:0")
    TRUE
  }, error = function(e) FALSE)
  skip_if_not(ok, "IPv6 loopback unavailable")
  expect_match(status()$daemons, "^tls\\+tcp://\\[::1\\]:[0-9]+$")
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai(6 * 7)[], 42)
})

test_that("a daemon dialling the wrong websocket path is refused", {
  daemons(url = "ws://127.0.0.1:0/right")
  on.exit(daemons(0))
  wrong <- sub("/right$", "/wrong", status()$daemons)
  p <- r_process(sprintf('mirai::daemon("%s")', wrong))
  expect_true(wait_for(function() !p$is_alive(), timeout = 20))
  expect_false(identical(p$get_exit_status(), 0L))
  # the dial fails with the transport's "<code> | <message>"
  expect_match(paste(p$read_all_error_lines(), collapse = "\n"), "[0-9]+ \\| [A-Z][a-z ]+")
  expect_identical(status()$connections, 0L)
  expect_gte(status()$refused, 1L)
})

test_that("a daemon given the wrong certificate is refused, the host unharmed", {
  on.exit({
    daemons(0)
    daemons(0, .compute = "other")
  })
  daemons(url = "tls+tcp://127.0.0.1:0", .compute = "other")
  other_ca <- attr(mirai:::.profile("other")$host, "tlscert")
  url_daemons(1, "tls+tcp://127.0.0.1:0")
  url <- status()$daemons
  code <- sprintf('mirai::daemon("%s", tlscert = c(%s, ""))', url, deparse(other_ca))
  p <- r_process(code)
  expect_true(wait_for(function() !p$is_alive(), timeout = 20))
  expect_false(identical(p$get_exit_status(), 0L))
  expect_match(paste(p$read_all_error_lines(), collapse = "\n"), "27 | Peer could not be authenticated",
               fixed = TRUE)
  # no tlscert at all: the system authorities do not know this host either
  p <- r_process(sprintf('mirai::daemon("%s")', url))
  expect_true(wait_for(function() !p$is_alive(), timeout = 20))
  expect_false(identical(p$get_exit_status(), 0L))
  # the right certificate but not the host's secret: refused as on tcp
  ca <- attr(mirai:::.profile(NULL)$host, "tlscert")
  code <- sprintf('mirai::daemon("%s", tlscert = c(%s, ""))', url, deparse(ca))
  p <- r_process(code, env = c(MIRAI_SECRET = "not-the-secret"))
  expect_true(wait_for(function() !p$is_alive(), timeout = 20))
  expect_false(identical(p$get_exit_status(), 0L))
  expect_identical(status()$connections, 1L)
  expect_gte(status()$refused, 3L)
  expect_identical(mirai(21 * 2)[], 42)
})

test_that("a plain tcp client at a TLS port gets nothing; the host goes on", {
  on.exit(daemons(0))
  url_daemons(1, "tls+tcp://127.0.0.1:0", dispatcher = FALSE)
  url <- status()$daemons
  m <- mirai({ Sys.sleep(0.5); "still served" })
  con <- open_silent(url)
  writeBin(frame_bytes(1, hello_bytes()), con)
  flush(con)
  expect_true(peer_closed(con, timeout = 15))
  close(con)
  # a mirai daemon dialling the same port without TLS fails too
  p <- r_process(sprintf('mirai::daemon("tcp://127.0.0.1:%d")', any_port(url)))
  expect_true(wait_for(function() !p$is_alive(), timeout = 20))
  expect_false(identical(p$get_exit_status(), 0L))
  expect_gte(status()$refused, 2L)
  expect_identical(m[], "still served")
  expect_identical(status()$connections, 1L)
})

test_that("a stalled TLS handshake does not hold up other daemons", {
  daemons(url = "tls+tcp://127.0.0.1:0")
  on.exit(daemons(0))
  url <- status()$daemons
  # two peers open the port and say nothing: their handshakes stall
  stalled <- list(open_silent(url), open_silent(url))
  on.exit(lapply(stalled, close), add = TRUE, after = FALSE)
  launch_local(1)
  expect_identical(mirai("served while others stall")[], "served while others stall")
  # the stalled peers are still pending (refused only at their timeout):
  # the daemon was admitted alongside them, not after them
  expect_identical(status()$refused, 0L)
  expect_identical(status()$connections, 1L)
})

test_that("launch_remote() commands carry the certificate and connect", {
  daemons(url = "tls+tcp://127.0.0.1:0")
  on.exit(daemons(0))
  cmds <- launch_remote(1)
  ca <- attr(mirai:::.profile(NULL)$host, "tlscert")
  # the client certificate is embedded, its newlines kept literally
  expect_identical(nextget("tls"), c(ca, ""))
  expect_match(cmds[1L], sprintf(',tlscert=c("%s","")', ca), fixed = TRUE)
  # printed, the command carries the secret in front; it spans lines (the
  # PEM's newlines)
  printed <- paste(capture.output(print(cmds)), collapse = "\n")
  expect_true(startsWith(printed, "[1]\nMIRAI_SECRET="))
  cmd <- sub("\n+$", "", sub("^\\[1\\]\n", "", printed))
  expect_identical(strip_secret(cmd), unclass(cmds)[1L])
  # and it runs, without this session's MIRAI_SECRET to inherit
  p <- processx::process$new("/bin/sh", c("-c", cmd), env = c("current", MIRAI_SECRET = ""),
                             cleanup = TRUE, cleanup_tree = TRUE)
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai(1 + 1, .timeout = 20000)[], 2)
})

# Certificates made with the openssl command: an authority, a host
# certificate for 127.0.0.1 signed by it, and the host's key, encrypted
# with `password` when one is given.
openssl_credentials <- function(dir, password = NULL) {
  run <- function(...) {
    out <- suppressWarnings(system2("openssl", shQuote(c(...)), stdout = TRUE, stderr = TRUE))
    if (!is.null(attr(out, "status"))) stop(paste(out, collapse = "\n"))
  }
  f <- function(x) file.path(dir, x)
  run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=test-ca")
  run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", f("host.key"), "-out", f("host.csr"), "-subj", "/CN=127.0.0.1")
  writeLines("subjectAltName=IP:127.0.0.1", f("ext.cnf"))
  run("x509", "-req", "-in", f("host.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
      "-CAcreateserial", "-out", f("host.pem"), "-days", "2", "-extfile", f("ext.cnf"))
  if (!is.null(password)) {
    run("pkcs8", "-topk8", "-in", f("host.key"), "-out", f("host.enc.key"),
        "-v2", "aes-256-cbc", "-passout", paste0("pass:", password))
  }
  invisible(dir)
}

test_that("user certificates: a CA-signed host, an encrypted key with `pass`", {
  skip_if(!nzchar(Sys.which("openssl")), "the openssl command is not installed")
  dir <- tempfile("certs")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  openssl_credentials(dir, password = "correct horse")
  f <- function(x) file.path(dir, x)

  # certificate and encrypted key as files, password from a function; the
  # daemons trust the authority given as tlscert
  on.exit(daemons(0), add = TRUE, after = FALSE)
  url_daemons(2, "tls+tcp://127.0.0.1:0", tls = c(f("host.pem"), f("host.enc.key")),
              pass = function() "correct horse", tlscert = f("ca.pem"))
  expect_null(attr(mirai:::.profile(NULL)$host, "tlscert"))
  expect_identical(status()$connections, 2L)
  expect_identical(mirai(1 + 1)[], 2)
  daemons(0)

  # one file holding the certificate and the (plain) key, over wss
  writeLines(c(readLines(f("host.pem")), readLines(f("host.key"))), f("both.pem"))
  ca_text <- paste(readLines(f("ca.pem")), collapse = "\n")
  url_daemons(1, "wss://127.0.0.1:0/x", tls = f("both.pem"), tlscert = c(ca_text, ""))
  expect_identical(mirai("ok")[], "ok")
  daemons(0)

  expect_error(
    daemons(url = "tls+tcp://127.0.0.1:0", tls = c(f("host.pem"), f("host.enc.key")),
            pass = function() "wrong"),
    "cannot decrypt the private key"
  )
  expect_error(
    daemons(url = "tls+tcp://127.0.0.1:0", tls = c(f("host.pem"), f("host.enc.key"))),
    "supply `pass`"
  )
  expect_false(daemons_set())
})

test_that("bad TLS arguments error clearly, naming the argument", {
  expect_error(daemons(url = "tls+tcp://127.0.0.1:0", tls = 1), "`tls`")
  expect_error(daemons(url = "tls+tcp://127.0.0.1:0", tls = "/no/such/file.pem"), "`tls`")
  expect_error(daemons(url = "tls+tcp://127.0.0.1:0", tls = c("junk", "junk")), "`tls`")
  expect_error(daemons(url = "tls+tcp://127.0.0.1:0", pass = "pw"), "`pass`")
  # daemons() passes `tlscert` on to daemons unchecked; daemon() checks it
  expect_error(daemon("tls+tcp://127.0.0.1:1", tlscert = 1), "`tlscert`")
  expect_error(daemon("tls+tcp://127.0.0.1:1", tlscert = "/no/such/ca.pem"), "`tlscert`")
  expect_false(daemons_set())
})

test_that("a wss URL without a port listens on 443", {
  ok <- tryCatch({
    daemons(url = "wss://127.0.0.1/noport")
    TRUE
  }, error = conditionMessage)
  skip_if_not(isTRUE(ok), paste("cannot listen on port 443:", ok))
  on.exit(daemons(0))
  expect_identical(any_port(status()$daemons), 443L)
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("default port")[], "default port")
})
