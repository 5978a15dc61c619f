# Launch configurations against real parts: an OpenSSH server started for
# the test (and the ssh client), a scheduler stand-in (/bin/sh) that runs
# the job script, HTTP endpoints in other R processes, an HTTPS server
# (openssl s_server), network namespaces.

# Start sshd at `address` (inside network namespace `netns`, if given) at a
# random high port with a throwaway host key and an authorized key; returns
# list(port, ssh = wrapper script, stop = function). The daemons it starts
# run from a fresh login: remote_rscript() gives them this session's
# library paths.
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

# The Rscript for daemons started through a login shell (ssh): this R's,
# with this session's library paths, so they find the mirai under test.
remote_rscript <- function()
  sprintf("R_LIBS=%s %s", shQuote(paste(.libPaths(), collapse = ":")), rscript())

test_that("ssh_config() launches daemons over SSH, direct and tunnelled", {
  sshd <- start_sshd()
  on.exit(sshd$stop())
  remote <- sprintf("ssh://root@127.0.0.1:%d", sshd$port)

  cfg <- ssh_config(c(remote, remote), command = sshd$ssh, rscript = remote_rscript())
  # one daemon per remote (n = 1 with several remotes)
  daemons(1, url = "tcp://127.0.0.1:0", remote = cfg)
  on.exit(daemons(0), add = TRUE, after = FALSE)
  expect_true(wait_conn(2, timeout = 30))
  # the daemons got the secret on standard input: no command line here
  # (ssh's, the remote shell's, the daemons') shows it
  expect_length(processes_showing(attr(mirai:::.profile(NULL)$host, "secret")), 0L)
  pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai({
    Sys.sleep(0.3)
    Sys.getpid()
  })))))
  expect_length(pids, 2L)
  daemons(0)
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 10))

  cfg <- ssh_config(remote, tunnel = TRUE, command = sshd$ssh, rscript = remote_rscript())
  daemons(1, url = "tcp://127.0.0.1:0", remote = cfg)
  expect_true(wait_conn(1, timeout = 30))
  expect_identical(mirai(6 * 7)[], 42)
  # the tunnelled command dials the host's own loopback port
  expect_match(launch_remote(1)[[1L]], nextget("url"), fixed = TRUE)
})

test_that("a failing ssh shows its own message on the console", {
  skip_if_not(nzchar(Sys.which("ssh")), "ssh client not installed")
  port <- url_port(free_tcp_url()) # nothing listens there
  p <- r_process(sprintf(paste(
    "library(mirai)",
    "daemons(url = 'tcp://127.0.0.1:0')",
    "cmds <- launch_remote(1, ssh_config('ssh://127.0.0.1:%d', timeout = 5))",
    "cat('LAUNCHED', length(cmds), '\\n')",
    sep = "; "), port))
  on.exit(kill_process(p))
  expect_true(p$wait(30000)$get_exit_status() == 0L)
  expect_identical(trimws(p$read_all_output_lines()), "LAUNCHED 1")
  # ssh runs in the background, writing to the session's stderr: reading
  # it to the end waits for ssh to give up
  err <- p$read_all_error_lines()
  expect_true(any(grepl(sprintf("connect to host 127.0.0.1 port %d", port), err, fixed = TRUE)), info = paste(err, collapse = "\n"))
})

test_that("ssh_config() builds the commands; bad input errors", {
  cfg <- ssh_config(c("ssh://user@node:2222", "ssh://10.0.0.5"), timeout = 5)
  expect_identical(cfg$args, list(c("-o ConnectTimeout=5 -fTp 2222", "user@node", "."),
                                  c("-o ConnectTimeout=5 -fTp 22", "10.0.0.5", ".")))
  expect_true(cfg$quote)
  expect_false(cfg$tunnel)
  expect_false(ssh_config("ssh://node", tunnel = NA)$tunnel)
  # ssh takes IPv6 addresses without brackets
  expect_identical(ssh_config("ssh://u@[::1]:2200")$args, list(c("-o ConnectTimeout=10 -fTp 2200", "u@::1", ".")))
  expect_error(ssh_config("node"), "ssh://")
  expect_error(ssh_config(1), "`remotes`")
  # tunnelling needs a 127.0.0.1 host URL, checked before anything runs
  daemons(url = local_url())
  on.exit(daemons(0))
  rec <- recorder_script()
  expect_error(launch_remote(1, ssh_config("ssh://node", tunnel = TRUE, command = rec$path)),
               "SSH tunnelling requires daemons `url` hostname to be `127.0.0.1`", fixed = TRUE)
  expect_false(file.exists(rec$args))
})

test_that("cluster_config() submits a job script that really runs", {
  cfg <- cluster_config(command = "/bin/sh", rscript = rscript(), options = "# scheduler directives here
    export MIRAI_TEST_JOB=ran-as-job")
  expect_identical(cfg$args, c("/bin/sh<<'EOF'\n#!/bin/sh\n# scheduler directives here\nexport MIRAI_TEST_JOB=ran-as-job\n",
                               ".", "\nEOF"))
  # the host's secret reaches the job through the environment the
  # scheduler passes on (this session has none to lend it)
  old <- Sys.getenv("MIRAI_SECRET")
  on.exit(Sys.setenv(MIRAI_SECRET = old))
  Sys.unsetenv("MIRAI_SECRET")
  daemons(2, url = local_url(), remote = cfg)
  Sys.setenv(MIRAI_SECRET = old)
  on.exit(daemons(0), add = TRUE)
  expect_true(wait_conn(2, timeout = 30))
  expect_length(processes_showing(attr(mirai:::.profile(NULL)$host, "secret")), 0L)
  expect_identical(mirai(Sys.getenv("MIRAI_TEST_JOB"))[], "ran-as-job")
})

test_that("daemons(url, remote) resets the profile when launching fails", {
  on.exit(daemons(0))
  rec <- recorder_script()
  cfg <- remote_config(command = rec$path, args = list(c("a", "."), c("b", ".")))
  expect_error(daemons(3, url = local_url(), remote = cfg),
               "`n` must equal the length of `args`, or either must be 1", fixed = TRUE)
  expect_false(daemons_set())
  expect_error(daemons(1, url = local_url(), remote = ssh_config("ssh://h", tunnel = TRUE)),
               "SSH tunnelling requires", fixed = TRUE)
  expect_false(daemons_set())
  # `n` is needed with `remote`
  expect_error(daemons(url = local_url(), remote = cfg), "\"n\" is missing", fixed = TRUE)
  expect_false(daemons_set())
  # an HTTP API that cannot be reached
  port <- url_port(free_tcp_url())
  expect_error(daemons(1, url = local_url(), remote = http_config(sprintf("http://127.0.0.1:%d/x", port), data = "%s", headers = NULL)),
               sprintf("HTTP request to 'http://127.0.0.1:%d/x' failed: cannot connect", port), fixed = TRUE)
  expect_false(daemons_set())
  expect_false(file.exists(rec$args))
})

# An HTTP endpoint in its own R process, answering one request for each of
# `replies` (complete HTTP responses, sent as they are), recording every
# request (head lines, body) to `record`. `launch`: what it then does with
# a request's body: "call" runs the daemon call in {"call":"<call>"};
# "job" runs the job of a Posit Workbench launch_job request (the exe with
# its args), as Workbench would; "none" nothing.
http_endpoint <- function(port, record, replies, launch = "none") {
  server <- function(port, record, replies, launch) {
    s <- serverSocket(port)
    cat("READY\n")
    flush(stdout())
    seen <- list()
    for (reply in replies) {
      con <- socketAccept(s, blocking = TRUE, open = "r+b", timeout = 60)
      head <- character()
      repeat {
        l <- sub("\r$", "", readLines(con, n = 1L))
        if (!length(l) || !nzchar(l)) break
        head <- c(head, l)
      }
      len <- as.integer(sub("^[^:]*: *", "", grep("^content-length:", head, ignore.case = TRUE, value = TRUE)))
      body <- if (length(len) && len > 0L) rawToChar(readBin(con, "raw", len)) else ""
      seen[[length(seen) + 1L]] <- list(head = head, body = body)
      saveRDS(seen, paste0(record, ".tmp"))
      file.rename(paste0(record, ".tmp"), record)
      cat(reply, file = con, sep = "")
      flush(con)
      close(con)
      exe <- file.path(R.home("bin"), "Rscript")
      if (launch == "call") {
        call <- sub('^\\{"call":"(.*)"\\}$', "\\1", body)
        call <- gsub("\001", "\\", gsub("\\n", "\n", gsub('\\"', '"', gsub("\\\\", "\001", call, fixed = TRUE), fixed = TRUE), fixed = TRUE), fixed = TRUE)
        system2(exe, c("-e", shQuote(call)), wait = FALSE)
      } else if (launch == "job" && grepl("launch_job", body, fixed = TRUE)) {
        job <- secretbase::jsondec(body)$kwparams$job
        system2(job$exe, shQuote(unlist(job$args)), wait = FALSE)
      }
    }
    close(s)
  }
  r_process(sprintf("server <- %s\nserver(%d, %s, %s, %s)", paste(deparse(server), collapse = "\n"),
                    port, deparse(record), paste(deparse(replies), collapse = ""), deparse(launch)))
}

http_reply <- function(status = "200 OK", body = "", type = "text/plain")
  sprintf("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
          status, type, nchar(body, "bytes"), body)

start_endpoint <- function(replies, launch = "none", frame = parent.frame()) {
  port <- url_port(free_tcp_url())
  record <- tempfile(fileext = ".rds")
  server <- http_endpoint(port, record, replies, launch)
  do.call(on.exit, list(bquote(kill_process(.(server))), add = TRUE), envir = frame)
  expect_true("READY" %in% read_lines_until(server, function(l) "READY" %in% l))
  list(url = sprintf("http://127.0.0.1:%d", port), record = record, server = server,
       requests = function(n) {
         ok <- wait_for(function() file.exists(record) && length(readRDS(record)) >= n, timeout = 20)
         if (ok) readRDS(record)
       })
}

test_that("http_config() launches daemons through HTTP requests", {
  ep <- start_endpoint(rep(http_reply("201 Created", "{\"id\":1}", "application/json"), 2L), launch = "call")
  cfg <- http_config(paste0(ep$url, "/launch"), method = "PUT",
                     headers = c(`X-Launcher` = "mirai-test"), cookie = "session=abc",
                     token = function() "secret-token", data = "{\"call\":\"%s\"}")
  # over TLS: the call carries the certificate, newlines and quotes escaped
  on.exit(daemons(0), add = TRUE)
  daemons(url = "tls+tcp://127.0.0.1:0")
  res <- withVisible(launch_remote(2, remote = cfg))
  expect_false(res$visible)
  res <- res$value
  expect_length(res, 2L)
  expect_identical(res[[1L]]$status, 201L)
  expect_identical(res[[1L]]$data, "{\"id\":1}")
  expect_identical(res[[1L]]$headers[["Content-Type"]], "application/json")
  reqs <- ep$requests(2L)
  call <- sprintf("mirai::daemon(\"%s\",tlscert=c(\"%s\",\"\"))", nextget("url"), nextget("tls")[1L])
  for (req in reqs) {
    expect_identical(req$head[1L], "PUT /launch HTTP/1.1")
    expect_true("X-Launcher: mirai-test" %in% req$head)
    expect_true("Cookie: session=abc" %in% req$head)
    expect_true("Authorization: Bearer secret-token" %in% req$head)
    # without the secret ([EXT]: it never crosses the network; the
    # endpoint's jobs have it in their environment)
    expect_identical(req$body, sprintf("{\"call\":\"%s\"}", mirai:::.json_escape(call)))
    expect_false(grepl(host_secret(), req$body, fixed = TRUE))
  }
  expect_match(reqs[[1L]]$body, "\\n", fixed = TRUE)
  # the endpoint ran the calls it was sent: the daemons connect over TLS
  expect_true(wait_conn(2, timeout = 30))
  expect_identical(mirai("via http")[], "via http")
})

test_that("an HTTP API's error status stops the launch with its answer", {
  ep <- start_endpoint(list(http_reply("503 Service Unavailable", "no capacity left\n")))
  on.exit(daemons(0), add = TRUE)
  e <- catch_cnd(daemons(1, url = local_url(), remote = http_config(ep$url, data = "%s", headers = NULL)))
  expect_identical(conditionMessage(e),
                   sprintf("HTTP request to '%s' failed: status 503: no capacity left", ep$url))
  expect_false(daemons_set())
  expect_length(ep$requests(1L), 1L)
})

test_that("http_config() checks what it is given when launching", {
  daemons(url = local_url())
  on.exit(daemons(0))
  expect_error(launch_remote(1, http_config(1, data = "%s", headers = NULL)), "`url` must be a character string")
  expect_error(launch_remote(1, http_config("http://127.0.0.1:1/", data = "no placeholder", headers = NULL)),
               "`data` must be a character string", fixed = TRUE)
  expect_error(launch_remote(1, http_config("http://127.0.0.1:1/", data = "%s", headers = "unnamed")),
               "`headers` must be a named character vector")
  expect_error(launch_remote(1, http_config("http://127.0.0.1:1/", data = "%s", headers = NULL, method = "GET /x")),
               "invalid HTTP method")
  expect_error(launch_remote(1, http_config("ftp://127.0.0.1/", data = "%s", headers = NULL)),
               "only http:// and https:// URLs are supported")
  expect_error(launch_remote(1, http_config("http://127.0.0.1:1/", data = "%s", headers = c(X = "a\r\nY: b"))),
               "must be a single line")
  expect_identical(mirai:::.json_escape("a \"q\" \\ b\nc"), "a \\\"q\\\" \\\\ b\\nc")
})

test_that("Ctrl-C interrupts a request to a server that never answers", {
  port <- url_port(free_tcp_url())
  srv <- serverSocket(port)
  on.exit(close(srv))
  p <- r_process(sprintf(paste(
    "library(mirai)",
    "cfg <- http_config('http://127.0.0.1:%d/launch', data = '%%s', headers = NULL)",
    "t0 <- Sys.time()",
    "r <- tryCatch({ daemons(1, url = local_url(), remote = cfg); 'not interrupted' }, interrupt = function(e) 'interrupted', error = function(e) conditionMessage(e))",
    "cat(r, format(as.numeric(difftime(Sys.time(), t0, units = 'secs'))), '\\n')",
    "cat('SET', daemons_set(), '\\n')",
    sep = "; "), port))
  on.exit(kill_process(p), add = TRUE)
  # the request has been made once the connection is there
  con <- socketAccept(srv, blocking = TRUE, open = "r+b", timeout = 30)
  on.exit(close(con), add = TRUE)
  p$interrupt()
  out <- read_lines_until(p, function(l) any(grepl("^SET", l)), timeout = 20)
  res <- strsplit(trimws(grep("interrupted|failed", out, value = TRUE)), " ")[[1L]]
  expect_identical(res[1L], "interrupted")
  # well before the request's own 5 s deadline
  expect_lt(as.numeric(res[2L]), 4)
  # the interrupted daemons() call left no profile
  expect_true("SET FALSE" %in% trimws(out))
  # and the request was given up: the connection is closed
  expect_true(peer_closed(con, timeout = 10))
})

# A certificate authority and a server certificate for 127.0.0.1 signed by
# it, made with openssl, in directory `dir`.
make_test_certificates <- function(dir) {
  skip_if_not(nzchar(Sys.which("openssl")), "openssl not installed")
  dir.create(dir, showWarnings = FALSE)
  f <- function(x) file.path(dir, x)
  run <- function(...) {
    out <- suppressWarnings(system2("openssl", c(...), stdout = TRUE, stderr = TRUE))
    if (!is.null(attr(out, "status"))) skip(paste("openssl failed:", paste(out, collapse = "\n")))
  }
  ec <- c("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
  run("req", "-x509", ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2",
      "-subj", "/CN=mirai-test-authority")
  run("req", ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1")
  writeLines(c("subjectAltName=IP:127.0.0.1", "basicConstraints=CA:FALSE"), f("ext.cnf"))
  run("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
      "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf"))
  list(ca = f("ca.pem"), cert = f("server.pem"), key = f("server.key"))
}

# An HTTPS server (openssl s_server) answering GET requests with the files
# in `dir`, each a complete HTTP response; its URL and the authority that
# signed its certificate.
start_https <- function(dir, frame = parent.frame()) {
  certs <- make_test_certificates(tempfile("certs-"))
  port <- url_port(free_tcp_url())
  p <- processx::process$new("openssl", c("s_server", "-accept", sprintf("127.0.0.1:%d", port),
                                          "-cert", certs$cert, "-key", certs$key, "-HTTP"),
                             wd = dir, stdout = "|", stderr = "|", cleanup = TRUE)
  do.call(on.exit, list(bquote(kill_process(.(p))), add = TRUE), envir = frame)
  if (!any(grepl("ACCEPT", read_lines_until(p, function(l) any(grepl("ACCEPT", l))))))
    skip(paste("openssl s_server did not start:", paste(p$read_error_lines(), collapse = "\n")))
  list(url = sprintf("https://127.0.0.1:%d", port), ca = certs$ca)
}

# Set environment variables until `frame` exits.
local_env <- function(..., frame = parent.frame()) {
  vars <- c(...)
  old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
  restore <- function() for (n in names(old)) if (is.na(old[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, as.list(old[n]))
  do.call(on.exit, list(as.call(list(restore)), add = TRUE, after = FALSE), envir = frame)
  for (n in names(vars)) if (is.na(vars[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, as.list(vars[n]))
  invisible()
}

# Compute environments as Posit Workbench lists them.
workbench_envs <- paste0(
  '{"result":{"clusters":[',
  '{"name":"Local","defaultImage":"","resourceProfiles":[{"name":"small","cpus":1},{"name":"large"}]},',
  '{"name":"Kubernetes","defaultImage":"rstudio/r-session:2025","resourceProfiles":[{"name":"gpu"}]}',
  ']}}'
)

test_that("http_config() launches over https, verifying the server's certificate", {
  site <- tempfile("site-")
  dir.create(site)
  writeBin(charToRaw(http_reply(body = "launched\n")), file.path(site, "launch"))
  writeBin(charToRaw(http_reply("403 Forbidden", "not you")), file.path(site, "refuse"))
  srv <- start_https(site)
  cfg <- http_config(paste0(srv$url, "/launch"), method = "GET", headers = c(`X-Test` = "1"), data = "%s")
  daemons(url = local_url())
  on.exit(daemons(0), add = TRUE)
  # the test authority is trusted only when named
  local_env(MIRAI_HTTP_CAFILE = srv$ca)
  res <- launch_remote(2, remote = cfg)
  expect_length(res, 2L)
  expect_identical(res[[2L]]$status, 200L)
  expect_identical(res[[2L]]$data, "launched\n")
  expect_identical(res[[2L]]$headers[["Content-Type"]], "text/plain")
  refused <- http_config(paste0(srv$url, "/refuse"), method = "GET", headers = NULL, data = "%s")
  expect_error(launch_remote(1, remote = refused),
               sprintf("HTTP request to '%s/refuse' failed: status 403: not you", srv$url), fixed = TRUE)
  # the Posit Workbench look-up over https
  if (requireNamespace("secretbase", quietly = TRUE)) {
    dir.create(file.path(site, "api"))
    writeBin(charToRaw(http_reply(body = workbench_envs, type = "application/json")),
             file.path(site, "api", "get_compute_envs"))
    local_env(RS_SERVER_ADDRESS = srv$url, RS_SESSION_RPC_COOKIE = "c")
    expect_match(http_config()$data(), '"cluster":"Local"', fixed = TRUE)
  }
  # an unreadable CA file is an error
  local_env(MIRAI_HTTP_CAFILE = file.path(site, "no-such-ca.pem"))
  expect_error(launch_remote(1, remote = cfg), "cannot read the CA file")
  # the system's authorities do not know the test one: the certificate is refused
  local_env(MIRAI_HTTP_CAFILE = NA)
  e <- catch_cnd(launch_remote(1, remote = cfg))
  expect_match(conditionMessage(e), sprintf("^HTTP request to '%s/launch' failed: TLS: .*certificate", srv$url))
  expect_error(daemons(1, url = local_url(), remote = cfg), "certificate")
  expect_false(daemons_set())
})

# The launch_job body expected for `job` (a JSON text of its first fields
# and the last): the args as the host's library paths make them.
workbench_body <- function(cluster, image, rscript, rest, name = "mirai_daemon") {
  libs <- paste(sprintf("\\\"%s\\\"", .libPaths()), collapse = ",")
  sprintf('{"method":"launch_job","kwparams":{"job":{"cluster":"%s","container":{"image":"%s"},"name":"%s","exe":"%s","args":["-e","{.libPaths(c(%s));%%s}"],%s}}}',
          cluster, image, name, rscript, libs, rest)
}

test_that("the Posit Workbench defaults look up the compute environments and build the job", {
  skip_if_not_installed("secretbase")
  ep <- start_endpoint(c(rep(list(http_reply(body = workbench_envs, type = "application/json")), 6L),
                         list(http_reply("401 Unauthorized"))))
  local_env(RS_SERVER_ADDRESS = paste0(ep$url, "/"), RS_SESSION_RPC_COOKIE = "rpc-cookie-1")
  data <- http_config()$data
  expect_identical(data(), workbench_body("Local", "", "Rscript", '"resourceProfile":"small"'))
  req <- ep$requests(1L)[[1L]]
  expect_identical(req$head[1L], "GET /api/get_compute_envs HTTP/1.1")
  expect_true("Cookie: rpc-cookie-1" %in% req$head)
  expect_true("X-RS-Session-Server-RPC-Cookie: rpc-cookie-1" %in% req$head)
  expect_identical(req$body, "")
  expect_identical(data(cluster = "Kubernetes", rscript = "/opt/R/bin/Rscript", job_name = "j"),
                   workbench_body("Kubernetes", "rstudio/r-session:2025", "/opt/R/bin/Rscript",
                                  '"resourceProfile":"gpu"', name = "j"))
  expect_identical(data(resource_profile = "large"), workbench_body("Local", "", "Rscript", '"resourceProfile":"large"'))
  expect_identical(data(cpus = 4), workbench_body("Local", "", "Rscript", '"resources":{"cpus":4,"memory":512}'))
  e <- catch_cnd(data(cluster = "Slurm"))
  expect_identical(conditionMessage(e), "cluster 'Slurm' not found. Available: Local, Kubernetes")
  e <- catch_cnd(data(resource_profile = "huge"))
  expect_identical(conditionMessage(e), "resource profile 'huge' not found. Available: small, large")
  # a refused look-up (here 401)
  e <- catch_cnd(data())
  expect_identical(conditionMessage(e), "can only be used from Posit Workbench")
  expect_length(ep$requests(7L), 7L)
  # outside Workbench
  local_env(RS_SESSION_RPC_COOKIE = NA)
  expect_identical(conditionMessage(catch_cnd(data())), "can only be used from Posit Workbench")
  expect_identical(conditionMessage(catch_cnd(http_config()$headers())), "can only be used from Posit Workbench")
  local_env(RS_SERVER_ADDRESS = NA)
  expect_identical(conditionMessage(catch_cnd(http_config()$url())), "can only be used from Posit Workbench")
})

test_that("a daemon is launched through (a stand-in for) Posit Workbench", {
  skip_if_not_installed("secretbase")
  # the look-up, then the launch_job request, whose job the stand-in runs
  ep <- start_endpoint(list(http_reply(body = workbench_envs, type = "application/json"),
                            http_reply(body = '{"result":{"id":"job-1"}}', type = "application/json")),
                       launch = "job")
  local_env(RS_SERVER_ADDRESS = ep$url, RS_SESSION_RPC_COOKIE = "rpc-cookie-2")
  on.exit(daemons(0), add = TRUE)
  daemons(1, url = local_url(), remote = http_config(rscript = rscript(), cluster = "Local"))
  reqs <- ep$requests(2L)
  launch <- reqs[[2L]]
  expect_identical(launch$head[1L], "POST /api/launch_job HTTP/1.1")
  expect_true("Cookie: rpc-cookie-2" %in% launch$head)
  job <- secretbase::jsondec(launch$body)$kwparams$job
  expect_identical(job$exe, rscript())
  expect_identical(unlist(job$args)[2L],
                   sprintf("{.libPaths(c(%s));mirai::daemon(\"%s\")}",
                           paste(sprintf("\"%s\"", .libPaths()), collapse = ","), nextget("url")))
  expect_true(wait_conn(1, timeout = 30))
  expect_identical(mirai("via workbench")[], "via workbench")
})

test_that("host_url() gives one URL per network interface", {
  urls <- host_url(port = 5555)
  expect_type(urls, "character")
  expect_true(length(urls) >= 1L)
  expect_false(is.null(names(urls)))
  expect_true(all(grepl("^tcp://[0-9.]+:5555$", urls)))
  expect_true(all(grepl("^tls\\+tcp://", host_url(tls = TRUE))))
  # the addresses are this machine's: the host can listen on them
  daemons(url = host_url()[[1L]], dispatcher = FALSE)
  on.exit(daemons(0))
  expect_match(status()$daemons, sub(":0$", ":", host_url()[[1L]]), fixed = TRUE)
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
  daemons(1, url = "tcp://127.0.0.1:0",
          remote = ssh_config(remote, tunnel = TRUE, command = sshd$ssh, rscript = remote_rscript()))
  expect_true(wait_conn(1, timeout = 30))
  # the daemon runs in the namespace, so it reached the host's loopback
  # port only through the tunnel
  addrs <- mirai(system2("ip", c("-4", "-o", "addr", "show"), stdout = TRUE))[]
  expect_true(any(grepl(net$peer_ip, addrs, fixed = TRUE)))
  expect_false(any(grepl(net$host_ip, addrs, fixed = TRUE)))
  expect_identical(mirai(6 * 7)[], 42)
  expect_length(ssh_clients(), 1L)
})
