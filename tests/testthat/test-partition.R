# A network partition: the daemon's side of the link vanishes mid-task
# without a FIN or RST (a veth pair into a network namespace, taken down).
# The host must give the daemon up (its task resolves to errorValue 19)
# and the daemon, hearing nothing from its host, must exit. Needs root and
# iproute2's `ip` (network namespaces).

ip_ok <- function(...) {
  out <- suppressWarnings(system2("ip", c(...), stdout = TRUE, stderr = TRUE))
  is.null(attr(out, "status"))
}

test_that("a partitioned daemon's task resolves to errorValue 19 and the daemon exits", {
  skip_on_os(c("windows", "mac", "solaris"))
  skip_if_not(identical(unname(Sys.info()[["effective_user"]]), "root"), "needs root")
  skip_if(!nzchar(Sys.which("ip")), "needs iproute2's ip")
  skip_if_not_installed("processx")

  tag <- Sys.getpid() %% 100000L
  ns <- sprintf("mirai-part-%d", tag)
  veth_host <- sprintf("mph%d", tag) # interface names: 15 characters at most
  veth_ns <- sprintf("mpn%d", tag)
  net <- sprintf("10.200.%d", tag %% 200L + 20L)
  on.exit({
    ip_ok("netns", "del", ns)
    ip_ok("link", "del", veth_host)
  }, add = TRUE)
  skip_if_not(ip_ok("netns", "add", ns), "cannot create a network namespace")
  expect_true(ip_ok("link", "add", veth_host, "type", "veth", "peer", "name", veth_ns))
  expect_true(ip_ok("link", "set", veth_ns, "netns", ns))
  expect_true(ip_ok("addr", "add", paste0(net, ".1/24"), "dev", veth_host))
  expect_true(ip_ok("link", "set", veth_host, "up"))
  expect_true(ip_ok("netns", "exec", ns, "ip", "addr", "add", paste0(net, ".2/24"), "dev", veth_ns))
  expect_true(ip_ok("netns", "exec", ns, "ip", "link", "set", veth_ns, "up"))
  expect_true(ip_ok("netns", "exec", ns, "ip", "link", "set", "lo", "up"))

  daemons(url = sprintf("tcp://%s.1:0", net))
  on.exit(daemons(0), add = TRUE)
  url <- nextget("url")

  # the daemon runs inside the namespace, reaching the host over the veth
  p <- processx::process$new(
    "ip", c("netns", "exec", ns, rscript(), "--vanilla", "-e",
            sprintf("mirai::daemon('%s')", url)),
    env = c("current", R_LIBS = paste(.libPaths(), collapse = ":"),
            MIRAI_SECRET = TEST_SECRET),
    stdout = "|", stderr = "|", cleanup = TRUE, cleanup_tree = TRUE
  )
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 30))

  started <- tempfile("started")
  gate <- tempfile("gate") # never created: the task blocks until it goes
  m <- mirai({
    file.create(started)
    while (!file.exists(gate)) Sys.sleep(0.1)
    "passed the gate"
  }, started = started, gate = gate)
  expect_true(wait_for(function() file.exists(started), timeout = 30))

  # the partition: no FIN, no RST, just gone
  expect_true(ip_ok("link", "set", veth_host, "down"))
  cut <- Sys.time()
  resolved <- wait_for(function() !unresolved(m), timeout = 40, interval = 0.1)
  host_s <- as.numeric(difftime(Sys.time(), cut, units = "secs"))
  expect_true(resolved)
  expect_true(is_error_value(m$data))
  expect_identical(unclass(m$data), 19L)
  exited <- wait_for(function() !p$is_alive(), timeout = 40, interval = 0.1)
  daemon_s <- as.numeric(difftime(Sys.time(), cut, units = "secs"))
  expect_true(exited)
  message(sprintf("partition detected: host %.1f s, daemon exited %.1f s after the cut",
                  host_s, daemon_s))
})

test_that("a task longer than the silence limit completes: the busy daemon keeps answering", {
  daemons(1)
  on.exit(daemons(0), add = TRUE)
  # over 20 s without a result: only heartbeats pass either way meanwhile
  m <- mirai({ Sys.sleep(24); "finished" })
  expect_identical(call_mirai(m)$data, "finished")
  expect_identical(status()$connections, 1L)
})
