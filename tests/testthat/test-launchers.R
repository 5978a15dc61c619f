# Launch configurations against real parts: an OpenSSH server started for
# the test, and a scheduler stand-in (/bin/sh) that runs the job script.

# Start sshd at `address` (inside network namespace `netns`, if given) at a
# random high port with a throwaway host key and an authorized key; returns
# list(port, ssh = wrapper script, stop = function). The daemons it starts
# run `Rscript` from a fresh login, so mirai must be installed in R's
# default library (as CI does).
start_sshd <- function(address = "127.0.0.1", netns = NULL) {
  sshd <- "/usr/sbin/sshd"
  skip_if_not(file.exists(sshd), "OpenSSH server not installed (Debian: openssh-server)")
  skip_if_not(nzchar(Sys.which("ssh")) && nzchar(Sys.which("ssh-keygen")), "ssh client not installed")
  skip_if_not(identical(Sys.info()[["effective_user"]], "root"), "sshd test runs as root (CI)")
  dir <- tempfile("sshd-")
  dir.create(dir, mode = "0700")
  keygen <- function(file) system2("ssh-keygen", c("-q", "-t", "ed25519", "-N", "''", "-f", file))
  keygen(file.path(dir, "host_key"))
  keygen(file.path(dir, "client_key"))
  file.copy(file.path(dir, "client_key.pub"), file.path(dir, "authorized_keys"))
  if (!dir.exists("/run/sshd")) dir.create("/run/sshd", mode = "0755")
  port <- sample(20000:40000, 1L)
  writeLines(c(
    sprintf("Port %d", port), sprintf("ListenAddress %s", address),
    sprintf("HostKey %s", file.path(dir, "host_key")),
    sprintf("AuthorizedKeysFile %s", file.path(dir, "authorized_keys")),
    sprintf("PidFile %s", file.path(dir, "sshd.pid")),
    "PermitRootLogin yes", "StrictModes no", "PasswordAuthentication no",
    "KbdInteractiveAuthentication no", "UsePAM no", "AllowTcpForwarding yes"
  ), file.path(dir, "sshd_config"))
  cmd <- c(sshd, "-D", "-e", "-f", file.path(dir, "sshd_config"))
  if (!is.null(netns)) cmd <- c("ip", "netns", "exec", netns, cmd)
  p <- processx::process$new(cmd[1L], cmd[-1L], stdout = "|", stderr = "|", cleanup = TRUE)
  ssh <- file.path(dir, "ssh")
  writeLines(c("#!/bin/sh", sprintf(
    "exec ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR \"$@\"",
    file.path(dir, "client_key"))), ssh)
  Sys.chmod(ssh, "0755")
  ok <- wait_for(function() {
    con <- tryCatch(suppressWarnings(socketConnection(address, port, open = "r+b", timeout = 1)),
                    error = function(e) NULL)
    if (is.null(con)) return(FALSE)
    close(con)
    TRUE
  }, timeout = 10)
  if (!ok) {
    err <- paste(p$read_error_lines(), collapse = "\n")
    kill_process(p)
    skip(paste("sshd did not start:", err))
  }
  list(port = port, ssh = ssh, stop = function() {
    kill_process(p)
    unlink(dir, recursive = TRUE)
  })
}

test_that("ssh_config() launches daemons over SSH, direct and tunnelled", {
  sshd <- start_sshd()
  on.exit(sshd$stop())
  remote <- sprintf("ssh://root@127.0.0.1:%d", sshd$port)

  cfg <- ssh_config(c(remote, remote), command = sshd$ssh)
  daemons(url = "tcp://127.0.0.1:0", remote = cfg)
  expect_true(wait_conn(2, timeout = 30))
  pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai({
    Sys.sleep(0.3)
    Sys.getpid()
  })))))
  expect_length(pids, 2L)
  daemons(0)
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 10))

  daemons(url = "tcp://127.0.0.1:0", remote = ssh_config(remote, tunnel = TRUE, command = sshd$ssh))
  on.exit(daemons(0), add = TRUE)
  expect_true(wait_conn(1, timeout = 30))
  expect_identical(mirai(6 * 7)[], 42)
})

test_that("ssh_config() builds the commands; bad input errors", {
  cfg <- ssh_config(c("ssh://user@node:2222", "ssh://10.0.0.5"), timeout = 5)
  expect_identical(cfg$args[[1L]], c("-o", "ConnectTimeout=5", "-fTp", "2222", "user@node", "."))
  expect_identical(cfg$args[[2L]], c("-o", "ConnectTimeout=5", "-fTp", "22", "10.0.0.5", "."))
  expect_true(cfg$quote)
  expect_error(ssh_config("node"), "ssh://")
  expect_error(ssh_config(1), "`remotes`")
  expect_error(ssh_config("ssh://node", tunnel = NA), "`tunnel`")
  # tunnelling needs a 127.0.0.1 host URL
  daemons(url = local_url())
  on.exit(daemons(0))
  expect_error(launch_remote(1, ssh_config("ssh://node", tunnel = TRUE, command = "sh")),
               "SSH tunnelling requires daemons `url` hostname to be `127.0.0.1`", fixed = TRUE)
})

test_that("cluster_config() submits a job script that really runs", {
  cfg <- cluster_config(command = "/bin/sh", options = "# scheduler directives here
    export MIRAI_TEST_JOB=ran-as-job")
  expect_identical(cfg$options, c("# scheduler directives here", "export MIRAI_TEST_JOB=ran-as-job"))
  daemons(url = local_url(), remote = cfg)
  on.exit(daemons(0))
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai(Sys.getenv("MIRAI_TEST_JOB"))[], "ran-as-job")
  expect_error(cluster_config(command = 1), "`command`")
})

test_that("daemons(url, remote) resets the profile when launching fails", {
  expect_error(
    daemons(url = local_url(), remote = remote_config(command = "mirai-no-such-launcher", args = ".")),
    "launch command 'mirai-no-such-launcher' not found"
  )
  expect_false(daemons_set())
  expect_error(
    daemons(url = local_url(), remote = ssh_config("ssh://127.0.0.1:1", command = "false")),
    "failed with status"
  )
  expect_false(daemons_set())
})

# A one-request HTTP endpoint in its own R process: it records the request
# to `record`, answers 200, then runs the request body as a shell command.
http_endpoint <- function(port, record) {
  r_process(sprintf('
    s <- serverSocket(%d)
    cat("READY\\n")
    flush(stdout())
    con <- socketAccept(s, blocking = TRUE, open = "r+b", timeout = 60)
    head <- character()
    repeat {
      l <- readLines(con, n = 1L)
      if (!length(l) || !nzchar(l)) break
      head <- c(head, l)
    }
    len <- as.integer(sub("^[^:]*: *", "", grep("^Content-Length:", head, value = TRUE)))
    body <- if (len > 0L) rawToChar(readBin(con, "raw", len)) else ""
    saveRDS(list(head = head, body = body), "%s")
    cat("HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n", file = con)
    flush(con)
    close(con)
    close(s)
    system(body, wait = TRUE)
  ', port, record))
}

test_that("http_config() launches a daemon through an HTTP request", {
  port <- sample(40001:50000, 1L)
  record <- tempfile(fileext = ".rds")
  server <- http_endpoint(port, record)
  on.exit(kill_process(server))
  expect_true("READY" %in% read_lines_until(server, function(l) "READY" %in% l))
  cfg <- http_config(sprintf("http://127.0.0.1:%d/launch", port), method = "PUT",
                     headers = c(`X-Launcher` = "mirai-test"), cookie = "session=abc",
                     token = function() "secret-token", data = function(cmd) cmd)
  daemons(url = local_url(), remote = cfg)
  on.exit(daemons(0), add = TRUE)
  expect_true(wait_for(function() file.exists(record), timeout = 20))
  req <- readRDS(record)
  expect_match(req$head[1L], "^PUT /launch HTTP/1.1$")
  expect_true("X-Launcher: mirai-test" %in% req$head)
  expect_true("Cookie: session=abc" %in% req$head)
  expect_true("Authorization: Bearer secret-token" %in% req$head)
  expect_match(req$body, "^MIRAI_SECRET=")
  expect_match(req$body, "mirai::daemon(", fixed = TRUE)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("via http")[], "via http")
})

test_that("http_config() validates; a failing API resets the profile", {
  expect_error(http_config(1), "`url`")
  expect_error(http_config("http://h", data = "no placeholder"), "%s")
  expect_identical(mirai:::.http_body('{"cmd": "%s"}', 'a "q" \\ b'), '{"cmd": "a \\"q\\" \\\\ b"}')
  expect_identical(mirai:::.http_body(NULL, "cmd"), "cmd")
  expect_error(daemons(url = local_url(), remote = http_config("http://127.0.0.1:1/x")),
               "HTTP request")
  expect_false(daemons_set())
})

test_that("host_url() gives one URL per network interface", {
  urls <- host_url(port = 5555)
  expect_type(urls, "character")
  expect_true(length(urls) >= 1L)
  expect_false(is.null(names(urls)))
  expect_true(all(grepl("^tcp://[0-9.]+:5555$", urls)))
  expect_true(all(grepl("^tls\\+tcp://", host_url(tls = TRUE))))
  expect_error(host_url(port = -1), "`port`")
})

# A network namespace with its own address, joined to this one by a veth
# pair: a second "machine" on a private link. NULL (with the reason as an
# attribute) where namespaces cannot be made.
make_netns <- function() {
  why <- if (!identical(Sys.info()[["effective_user"]], "root")) "needs root" else
    if (!nzchar(Sys.which("ip"))) "iproute2 not installed"
  if (!is.null(why)) return(structure(list(), reason = why))
  tag <- sprintf("mirai%d", Sys.getpid() %% 100000L)
  ns <- paste0(tag, "ns")
  host_if <- paste0(tag, "a")
  peer_if <- paste0(tag, "b")
  octet <- 10L + Sys.getpid() %% 200L
  host_ip <- sprintf("10.213.%d.1", octet)
  peer_ip <- sprintf("10.213.%d.2", octet)
  run <- function(...) system2("ip", c(...), stdout = FALSE, stderr = FALSE)
  cleanup <- function() {
    # processes left in the namespace would outlive its name, cut off
    pids <- suppressWarnings(system2("ip", c("netns", "pids", ns), stdout = TRUE, stderr = FALSE))
    if (length(pids)) tools::pskill(as.integer(pids), tools::SIGKILL)
    run("netns", "del", ns)
    run("link", "del", host_if)
  }
  steps <- list(
    c("netns", "add", ns),
    c("link", "add", host_if, "type", "veth", "peer", "name", peer_if),
    c("link", "set", peer_if, "netns", ns),
    c("addr", "add", paste0(host_ip, "/24"), "dev", host_if),
    c("link", "set", host_if, "up"),
    c("netns", "exec", ns, "ip", "addr", "add", paste0(peer_ip, "/24"), "dev", peer_if),
    c("netns", "exec", ns, "ip", "link", "set", peer_if, "up"),
    c("netns", "exec", ns, "ip", "link", "set", "lo", "up")
  )
  for (s in steps) {
    if (run(s) != 0L) {
      cleanup()
      return(structure(list(), reason = paste("cannot set up a network namespace: ip", paste(s, collapse = " "))))
    }
  }
  list(ns = ns, host_ip = host_ip, peer_ip = peer_ip, cleanup = cleanup)
}

test_that("a daemon in its own network namespace dials the host across a link", {
  net <- make_netns()
  skip_if(is.null(net$ns), attr(net, "reason"))
  # the host listens on its side of the link only
  daemons(url = sprintf("tcp://%s:0", net$host_ip))
  # reset before the link goes, so the daemon hears its host leave
  on.exit({
    daemons(0)
    net$cleanup()
  })
  expect_match(status()$daemons, net$host_ip, fixed = TRUE)
  cfg <- remote_config(command = "ip", args = c("netns", "exec", net$ns, "/bin/sh", "-c", "."),
                       quote = TRUE)
  launch_remote(1, cfg)
  expect_true(wait_conn(1, timeout = 20))
  # the daemon sees the namespace's own address, not the host's
  addrs <- mirai(system2("ip", c("-4", "-o", "addr", "show"), stdout = TRUE))[]
  expect_true(any(grepl(net$peer_ip, addrs, fixed = TRUE)))
  expect_false(any(grepl(net$host_ip, addrs, fixed = TRUE)))
  expect_identical(mirai(6 * 7)[], 42)
  pid <- mirai(Sys.getpid())[]
  daemons(0)
  expect_true(wait_for(function() !pid_alive(pid), timeout = 10))
})

test_that("an SSH tunnel carries a daemon that cannot reach the host by itself", {
  net <- make_netns()
  skip_if(is.null(net$ns), attr(net, "reason"))
  on.exit(net$cleanup())
  # the "remote machine" is the namespace: its sshd listens on its side of
  # the link, and its 127.0.0.1 is its own, not the host's
  sshd <- start_sshd(address = net$peer_ip, netns = net$ns)
  on.exit(sshd$stop(), add = TRUE, after = FALSE)
  remote <- sprintf("ssh://root@%s:%d", net$peer_ip, sshd$port)
  # the ssh client (in the background, holding the tunnel) ends once its
  # daemon has; it is killed if not, before the link it uses goes away
  ssh_clients <- function()
    suppressWarnings(system2("pgrep", c("-f", shQuote(paste0("[r]oot@", net$peer_ip))), stdout = TRUE))
  on.exit({
    daemons(0)
    wait_for(function() !length(ssh_clients()), timeout = 10)
    pids <- ssh_clients()
    if (length(pids)) tools::pskill(as.integer(pids), tools::SIGKILL)
  }, add = TRUE, after = FALSE)
  daemons(url = "tcp://127.0.0.1:0", remote = ssh_config(remote, tunnel = TRUE, command = sshd$ssh))
  expect_true(wait_conn(1, timeout = 30))
  # the daemon runs in the namespace, so it reached the host's loopback
  # port only through the tunnel
  addrs <- mirai(system2("ip", c("-4", "-o", "addr", "show"), stdout = TRUE))[]
  expect_true(any(grepl(net$peer_ip, addrs, fixed = TRUE)))
  expect_false(any(grepl(net$host_ip, addrs, fixed = TRUE)))
  expect_identical(mirai(6 * 7)[], 42)
  expect_length(ssh_clients(), 1L)
})
