# A ws:// host serves a daemon written independently of this package: a
# Python script on the 'websockets' library upgrades the connection,
# completes the mutual handshake with its own HMACs, takes one task and
# answers it with a vector result.

# A Python 3 interpreter that has the 'websockets' module, or NULL.
python_with_websockets <- function() {
  for (py in unique(c(Sys.which("python3"), "/usr/bin/python3"))) {
    if (!nzchar(py) || !file.exists(py)) next
    ok <- suppressWarnings(system2(py, c("-c", shQuote("import websockets")),
                                   stdout = FALSE, stderr = FALSE))
    if (identical(ok, 0L)) return(py)
  }
  NULL
}

# The daemon's side, written from the protocol's description. Exit codes:
# 0 served the task, 3 the host's proof did not verify, 4 other failures.
ws_daemon_script <- '
import asyncio, hashlib, hmac, os, struct, sys

url, secret, value = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
HOST = b"mirai handshake v6: host proves to daemon\\0"
DAEMON = b"mirai handshake v6: daemon proves to host\\0"
HELLO, WELCOME, TASK, RESULT, CHALLENGE, PROOF = 1, 2, 4, 5, 9, 10

def frame(kind, body):
    return bytes([kind]) + struct.pack("<Q", len(body)) + body

def mac(label, d, h):
    return hmac.new(secret, label + d + h, hashlib.sha256).digest()

async def serve(send, recv):
    buf = bytearray()
    async def next_frame():
        while True:
            if len(buf) >= 9:
                n = struct.unpack("<Q", bytes(buf[1:9]))[0]
                if len(buf) >= 9 + n:
                    kind, body = buf[0], bytes(buf[9:9 + n])
                    del buf[:9 + n]
                    return kind, body
            msg = await recv()
            if not isinstance(msg, bytes):
                sys.exit(4)  # binary frames only
            buf.extend(msg)
    version = sys.argv[4].encode()
    d = os.urandom(32)
    await send(frame(HELLO, b"MIRAI\\0" + struct.pack("<HB", 7, len(version)) + version + d))
    kind, body = await next_frame()
    if kind != CHALLENGE or len(body) != 64:
        sys.exit(4)
    h, host_proof = body[:32], body[32:]
    if not hmac.compare_digest(host_proof, mac(HOST, d, h)):
        sys.exit(3)
    await send(frame(PROOF, mac(DAEMON, d, h)))
    kind, body = await next_frame()
    if kind != WELCOME:
        sys.exit(4)
    while True:  # a SERIAL configuration may come before the task
        kind, body = await next_frame()
        if kind == TASK:
            break
    task_id = body[:8]
    vector = bytes([13]) + bytes(7) + struct.pack("<Q", 1) + struct.pack("<i", value)
    await send(frame(RESULT, task_id + bytes([2]) + vector))

async def main():
    try:
        from websockets.sync.client import connect
        with connect(url) as ws:
            async def send(b): ws.send(b)
            async def recv(): return ws.recv()
            await serve(send, recv)
    except ImportError:  # before websockets 11: the asyncio client
        import websockets
        async with websockets.connect(url) as ws:
            await serve(ws.send, ws.recv)

asyncio.run(asyncio.wait_for(main(), 30))
'

run_ws_daemon <- function(py, script, url, secret, value) {
  p <- processx::process$new(py, c(script, url, secret, value,
                                   as.character(utils::packageVersion("mirai"))),
                             stdout = "|", stderr = "|", cleanup = TRUE)
  on.exit(kill_process(p))
  p$wait(40000)
  list(status = if (p$is_alive()) NA else p$get_exit_status(), stderr = p$read_all_error())
}

test_that("an independent websocket daemon completes the handshake and serves a task", {
  skip_if_not_installed("processx")
  py <- python_with_websockets()
  skip_if(is.null(py), "python3 with the websockets module is not available")
  script <- tempfile(fileext = ".py")
  writeLines(ws_daemon_script, script)
  on.exit(unlink(script))
  daemons(url = "ws://127.0.0.1:0")
  on.exit(daemons(0), add = TRUE)
  url <- status()$daemons
  expect_match(url, "^ws://127\\.0\\.0\\.1:[0-9]+")
  secret <- Sys.getenv("MIRAI_SECRET")
  expect_identical(secret, attr(mirai:::.profile(NULL)$host, "secret"))

  # a wrong secret: the host's proof does not verify on the daemon's side
  wrong <- run_ws_daemon(py, script, url, "not-the-secret", 1L)
  expect_identical(wrong$status, 3L)

  m <- mirai("computed by the host's own daemon only if something is wrong")
  out <- run_ws_daemon(py, script, url, secret, 4242L)
  expect_identical(out$status, 0L, info = out$stderr)
  expect_true(wait_for(function() !unresolved(m), timeout = 20))
  expect_identical(m$data, 4242L)
})
