# Idle, unauthenticated connections to a host's port are bounded: under a
# descriptor limit of 1024 (soft and hard, so raising it cannot help) a
# host keeps serving through floods of thousands of them, and R in its
# process can still open files.

# The host: daemons at a TCP URL with one daemon, then for each command on
# stdin ("check", "launch", "quit") a report on stdout.
preauth_host_code <- '
library(mirai)
say <- function(...) { cat(..., "\n", sep = ""); flush(stdout()) }
daemons(url = "tcp://127.0.0.1:0")
launch_local(1)
deadline <- Sys.time() + 60
while (status()$connections < 1L && Sys.time() < deadline) Sys.sleep(0.05)
lim <- grep("^Max open files", readLines("/proc/self/limits"), value = TRUE)
say("limit ", paste(strsplit(lim, " +")[[1L]][4:5], collapse = " "))
say("url ", status()$daemons)
stdin <- file("stdin")
open(stdin)
repeat {
  cmd <- readLines(stdin, n = 1L)
  if (!length(cmd) || cmd == "quit") break
  if (cmd == "check") {
    ok <- tryCatch({
      con <- file(tempfile(), "w")
      writeLines("written", con)
      close(con)
      "ok"
    }, error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
    say("file ", ok)
    m <- mirai(Sys.getpid(), .timeout = 20000)
    say("task ", if (is.integer(m[])) "ok" else "failed")
    say("fds ", length(list.files("/proc/self/fd")))
  }
  if (cmd == "launch") {
    before <- status()$connections
    launch_local(1, asyncdial = TRUE)
    deadline <- Sys.time() + 40
    while (status()$connections <= before && Sys.time() < deadline) Sys.sleep(0.05)
    say("connections ", status()$connections)
    m <- mirai(Sys.getpid(), .timeout = 20000)
    say("task ", if (is.integer(m[])) "ok" else "failed")
  }
  say("done ", cmd)
}
daemons(0)
'

# The flood: `n` TCP connections to `port`, opened without blocking and
# left idle; prints how many connected, holds them until stdin closes.
preauth_flood_code <- '
import resource, selectors, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 256
if hard != resource.RLIM_INFINITY and hard < want:
    hard = want
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_WRITE)
    socks.append(s)
pending, connected = n, 0
# until all are connected, or no more connect for a while: a host that
# holds every descriptor it can leaves the rest in the listen queue
deadline, last = time.time() + 30, time.time()
while pending and time.time() < deadline and time.time() - last < 2.5:
    for key, _ in sel.select(timeout=0.25):
        sel.unregister(key.fileobj)
        pending -= 1
        last = time.time()
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            connected += 1
print("open", connected, flush=True)
sys.stdin.read()
for s in socks:
    s.close()
'

preauth_value <- function(lines, key) {
  hit <- grep(paste0("^", key, " "), lines, value = TRUE)
  if (length(hit)) sub(paste0("^", key, " "), "", hit[length(hit)]) else NA_character_
}

test_that("a host limited to 1024 descriptors survives floods of idle connections", {
  skip_on_os(c("windows", "mac"))
  skip_if_not_installed("processx")
  python <- Sys.which("python3")
  skip_if(!nzchar(python), "python3 is not available")
  script <- tempfile(fileext = ".R")
  writeLines(preauth_host_code, script)
  flood_script <- tempfile(fileext = ".py")
  writeLines(preauth_flood_code, flood_script)
  host <- processx::process$new(
    "bash", c("-c", sprintf("ulimit -n 1024 && exec '%s' --vanilla '%s'", rscript(), script)),
    stdin = "|", stdout = "|", stderr = "|", cleanup = TRUE, cleanup_tree = TRUE
  )
  flood <- NULL
  on.exit({
    kill_process(flood)
    if (host$is_alive()) try(host$write_input("quit\n"), silent = TRUE)
    try(host$wait(10000), silent = TRUE)
    kill_process(host)
    unlink(c(script, flood_script))
  })
  lines <- read_lines_until(host, function(l) any(grepl("^url ", l)), 90)
  expect_identical(preauth_value(lines, "limit"), "1024 1024")
  url <- preauth_value(lines, "url")
  expect_match(url, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  port <- sub("^.*:", "", url)

  for (n in c(3000L, 10000L)) {
    flood <- processx::process$new(python, c(flood_script, port, n),
                                   stdin = "|", stdout = "|", stderr = "|",
                                   cleanup = TRUE)
    opened <- read_lines_until(flood, function(l) any(grepl("^open ", l)), 60)
    expect_identical(preauth_value(opened, "open"), as.character(n))
    host$write_input("check\n")
    lines <- read_lines_until(host, function(l) any(l == "done check"), 60)
    expect_identical(preauth_value(lines, "file"), "ok")
    expect_identical(preauth_value(lines, "task"), "ok")
    fds <- as.integer(preauth_value(lines, "fds"))
    expect_lt(fds, 1024L)
    if (n == 10000L) {
      # a new daemon is admitted with the flood still open
      host$write_input("launch\n")
      lines <- read_lines_until(host, function(l) any(l == "done launch"), 90)
      expect_identical(preauth_value(lines, "connections"), "2")
      expect_identical(preauth_value(lines, "task"), "ok")
    }
    close(flood$get_input_connection())
    flood$wait(20000)
    kill_process(flood)
    flood <- NULL
  }
})

test_that("a stray connection does not stop an ephemeral mirai from resolving", {
  daemons(0)
  # the ephemeral host on TCP, at a port just free, so it can be dialled
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  url <- status()$daemons
  daemons(0)
  real <- mirai:::local_url
  utils::assignInNamespace("local_url", function(...) url, "mirai")
  on.exit(utils::assignInNamespace("local_url", real, "mirai"))
  m <- mirai("resolved", .timeout = 30000)
  # a stray peer, sending junk before the daemon has dialled: the host
  # drops it and must keep listening for its daemon
  con <- socketConnection("127.0.0.1", url_port(url), blocking = TRUE, timeout = 10,
                          open = "r+b")
  writeBin(charToRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), con)
  flush(con)
  expect_length(readBin(con, "raw", 1L), 0L) # closed by the host
  close(con)
  expect_identical(m[], "resolved")
})
