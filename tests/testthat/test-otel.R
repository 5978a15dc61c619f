# OpenTelemetry spans (SPEC 6), recorded by otelsdk's OTLP file exporter.
# mirai decides whether to trace when it is loaded, so each scenario runs in
# a fresh R process. Every process of a scenario (the host, and the daemons
# it starts, which inherit its environment) writes its spans to a file of
# its own, named by its pid, chosen in its startup profile before mirai is
# loaded.

skip_otel <- function() {
  skip_if_not_installed("otel")
  skip_if_not_installed("otelsdk")
  skip_if_not_installed("jsonlite")
  skip_if_not_installed("processx")
}

# Run the R code `code` as a script in a new R process, tracing or not;
# the script saves what it wants checked with `save_out(x)`. Returns the
# spans of every process (see read_spans()) and the saved value.
run_scenario <- function(code, tracing = TRUE, timeout = 120) {
  dir <- tempfile("otel-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  profile <- file.path(dir, "Rprofile")
  writeLines(c(
    sprintf("Sys.setenv(OTEL_EXPORTER_OTLP_TRACES_FILE = file.path(%s, sprintf('spans-%%d.jsonl', Sys.getpid())))",
            deparse(dir)),
    sprintf("save_out <- function(x) saveRDS(x, %s)", deparse(file.path(dir, "out.rds")))
  ), profile)
  script <- file.path(dir, "script.R")
  writeLines(code, script)
  # this session's environment without any exporter choice of its own
  env <- Sys.getenv()
  env <- structure(as.character(env), names = names(env))
  env <- env[!names(env) %in% c("OTEL_TRACES_EXPORTER", "OTEL_R_TRACES_EXPORTER")]
  env <- c(env, R_PROFILE_USER = profile, OTEL_EXPORTER_OTLP_TRACES_FILE_FLUSH_COUNT = "1")
  if (tracing) env <- c(env, OTEL_TRACES_EXPORTER = "otlp/file")
  res <- processx::run(rscript(), script, env = env, timeout = timeout,
                       error_on_status = FALSE, cleanup_tree = TRUE)
  if (!identical(res$status, 0L)) stop("scenario failed: ", res$stderr, call. = FALSE)
  list(spans = read_spans(dir), out = readRDS(file.path(dir, "out.rds")))
}

# The spans in the OTLP JSON lines files of `dir`: a data frame with one
# row per span (`pid` the process that recorded it, `attrs` and `links`
# list columns: attribute values by key, linked span ids).
read_spans <- function(dir) {
  files <- list.files(dir, pattern = "^spans-[0-9]+\\.jsonl$", full.names = TRUE)
  rows <- list()
  for (f in files) {
    pid <- as.integer(sub("^spans-([0-9]+)\\.jsonl$", "\\1", basename(f)))
    for (line in readLines(f, warn = FALSE)) {
      if (!nzchar(line)) next
      rec <- jsonlite::fromJSON(line, simplifyVector = FALSE)
      for (rs in rec$resourceSpans) for (ss in rs$scopeSpans) for (sp in ss$spans)
        rows[[length(rows) + 1L]] <- span_row(sp, ss$scope$name, pid)
    }
  }
  if (!length(rows)) return(data.frame(name = character()))
  out <- do.call(rbind, lapply(rows, function(r) as.data.frame(r[c("name", "kind", "trace", "id",
    "parent", "status", "description", "scope", "pid")])))
  out$attrs <- lapply(rows, `[[`, "attrs")
  out$links <- lapply(rows, `[[`, "links")
  out
}

span_row <- function(sp, scope, pid) {
  value <- function(v) {
    if (!is.null(v$intValue)) return(as.integer(v$intValue))
    if (!is.null(v$boolValue)) return(isTRUE(v$boolValue))
    if (!is.null(v$stringValue)) return(v$stringValue)
    if (!is.null(v$doubleValue)) return(as.numeric(v$doubleValue))
    if (!is.null(v$arrayValue)) return(unlist(lapply(v$arrayValue$values, value)))
    NULL
  }
  attrs <- list()
  for (a in sp$attributes) attrs[[a$key]] <- value(a$value)
  list(name = sp$name, kind = as.integer(sp$kind %||% 0L), trace = sp$traceId,
       id = sp$spanId, parent = sp$parentSpanId %||% "",
       status = as.integer(sp$status$code %||% 0L), description = sp$status$message %||% "",
       scope = scope, pid = pid, attrs = attrs,
       links = vapply(sp$links, function(l) l$spanId, character(1L)))
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# OTLP span kinds and status codes.
KIND_INTERNAL <- 1L
KIND_SERVER <- 2L
KIND_CLIENT <- 3L
STATUS_ERROR <- 2L

# The one span named `name` (an error if there is not exactly one).
one_span <- function(spans, name) {
  i <- which(spans$name == name)
  if (length(i) != 1L) stop(sprintf("%d spans named '%s'", length(i), name))
  spans[i, ]
}

# The `mirai` span with mirai.id `id`.
mirai_span <- function(spans, id) {
  i <- which(spans$name == "mirai" &
               vapply(spans$attrs, function(a) identical(a[["mirai.id"]], as.integer(id)), logical(1L)))
  if (length(i) != 1L) stop(sprintf("%d mirai spans with id %d", length(i), id))
  spans[i, ]
}

# The daemon eval span whose parent is span `id`.
eval_child <- function(spans, id) {
  i <- which(spans$name == "daemon eval" & spans$parent == id)
  if (length(i) != 1L) stop(sprintf("%d daemon eval spans with parent %s", length(i), id))
  spans[i, ]
}

test_that("tasks on a daemon in another process: spans, attributes, links and propagated parents", {
  skip_otel()
  r <- run_scenario(r"--(
library(mirai)
daemons(url = "tcp://127.0.0.1:0", .compute = "tr")
url <- status(.compute = "tr")$daemons
d <- processx::process$new(file.path(R.home("bin"), "Rscript"),
                           c("-e", sprintf("mirai::daemon('%s')", url)), cleanup = TRUE)
ok <- mirai(1 + 1, .compute = "tr")
ok_v <- ok[]
bad <- mirai(stop("boom"), .compute = "tr")
bad_v <- bad[]
intr <- mirai({ tools::pskill(Sys.getpid(), tools::SIGINT); Sys.sleep(2); 1 }, .compute = "tr")
intr_v <- intr[]
ctx <- mirai(._otel_., .compute = "tr")
ctx_v <- ctx[]
inner <- mirai((function() {
  span <- otel::start_local_active_span("task work", tracer = "task")
  span$get_context()$get_span_id()
})(), .compute = "tr")
inner_v <- inner[]
mp <- mirai_map(1:2, function(x) x * 2, .compute = "tr")
mp_v <- mp[]
ev <- everywhere(TRUE, .compute = "tr")
ev_v <- ev[]
eph <- mirai(2 + 2)
eph_v <- eph[]
daemons(0, .compute = "tr")
exited <- d$wait(30000)$is_alive()
save_out(list(url = url, dpid = d$get_pid(), alive = exited, on = mirai:::.otel$on,
              values = list(ok_v, bad_v, intr_v, unname(mp_v), ev_v, eph_v),
              ids = list(ok = attr(ok, "id"), bad = attr(bad, "id"), intr = attr(intr, "id"),
                         ctx = attr(ctx, "id"), inner = attr(inner, "id"),
                         map = vapply(mp, attr, integer(1L), "id"),
                         ev = vapply(ev, attr, integer(1L), "id")),
              ctx = ctx_v, inner = inner_v))
)--")
  out <- r$out
  spans <- r$spans
  expect_true(out$on)
  expect_false(out$alive)
  expect_identical(out$values[[1L]], 2)
  expect_true(is_mirai_error(out$values[[2L]]))
  expect_true(is_mirai_interrupt(out$values[[3L]]))
  expect_identical(out$values[[4L]], list(2, 4))
  expect_identical(out$values[[6L]], 4)
  expect_true(all(spans$scope[spans$name != "task work"] == "org.r-lib.mirai"))
  host <- spans[spans$pid != out$dpid, ]
  daemon <- spans[spans$pid == out$dpid, ]
  port <- as.integer(sub("^.*:", "", out$url))
  url_attrs <- list(server.address = "127.0.0.1", server.port = port, network.transport = "tcp")

  # daemons set / reset, on the host
  set <- one_span(host, sprintf("daemons set %s", out$url))
  expect_identical(set$kind, KIND_INTERNAL)
  expect_identical(set$attrs[[1L]], c(url_attrs, list(mirai.dispatcher = TRUE, mirai.compute = "tr")))
  reset <- one_span(host, sprintf("daemons reset %s", out$url))
  expect_identical(reset$kind, KIND_INTERNAL)
  expect_identical(reset$attrs[[1L]], set$attrs[[1L]])
  expect_identical(reset$links[[1L]], set$id)

  # mirai spans: client, mirai.id, linked to daemons set; none for the
  # ephemeral mirai
  ms <- host[host$name == "mirai", ]
  expect_identical(nrow(ms), 8L)
  expect_true(all(ms$kind == KIND_CLIENT))
  expect_true(all(vapply(ms$links, identical, logical(1L), set$id)))
  ids <- out$ids
  expect_setequal(unlist(lapply(ms$attrs, `[[`, "mirai.id")), unlist(ids))
  ok <- mirai_span(host, ids$ok)
  expect_identical(ok$parent, "")

  # daemon connect / disconnect, on the daemon
  connect <- one_span(daemon, sprintf("daemon connect %s", out$url))
  expect_identical(connect$kind, KIND_INTERNAL)
  expect_identical(connect$attrs[[1L]], url_attrs)
  expect_length(connect$links[[1L]], 0L)
  disconnect <- one_span(daemon, sprintf("daemon disconnect %s", out$url))
  expect_identical(disconnect$attrs[[1L]], url_attrs)
  expect_identical(disconnect$links[[1L]], connect$id)

  # daemon eval: server, parent the mirai span across processes (same
  # trace), linked to daemon connect, error statuses
  evals <- daemon[daemon$name == "daemon eval", ]
  expect_identical(nrow(evals), 8L)
  expect_true(all(evals$kind == KIND_SERVER))
  expect_true(all(vapply(evals$links, identical, logical(1L), connect$id)))
  expect_setequal(evals$parent, ms$id)
  for (i in seq_len(nrow(ms))) {
    e <- eval_child(daemon, ms$id[i])
    expect_identical(e$trace, ms$trace[i])
  }
  expect_identical(eval_child(daemon, ok$id)$status == STATUS_ERROR, FALSE)
  bad <- eval_child(daemon, mirai_span(host, ids$bad)$id)
  expect_identical(c(bad$status, bad$description), c(STATUS_ERROR, "miraiError"))
  intr <- eval_child(daemon, mirai_span(host, ids$intr)$id)
  expect_identical(c(intr$status, intr$description), c(STATUS_ERROR, "miraiInterrupt"))

  # the trace context the daemon received: W3C traceparent of its mirai span
  ctx <- mirai_span(host, ids$ctx)
  expect_identical(unname(out$ctx[["traceparent"]]), sprintf("00-%s-%s-01", ctx$trace, ctx$id))

  # a span the task itself makes is a child of daemon eval
  work <- one_span(daemon, "task work")
  expect_identical(work$id, out$inner)
  expect_identical(work$parent, eval_child(daemon, mirai_span(host, ids$inner)$id)$id)

  # mirai_map: linked to daemons set, its element mirai spans its children
  map <- one_span(host, "mirai_map")
  expect_identical(map$kind, KIND_INTERNAL)
  expect_identical(map$links[[1L]], set$id)
  for (id in ids$map) expect_identical(mirai_span(host, id)$parent, map$id)

  # everywhere(): an ordinary mirai span, evaluated under it on the daemon
  ev <- mirai_span(host, ids$ev)
  expect_identical(eval_child(daemon, ev$id)$status == STATUS_ERROR, FALSE)
})

test_that("sync mode records daemon eval in the host process, under the active span", {
  skip_otel()
  r <- run_scenario(r"--(
library(mirai)
daemons(sync = TRUE)
url <- status()$daemons
f <- function() {
  otel::start_local_active_span("outer", tracer = "app")
  list(ok = mirai(1 + 1), bad = mirai(stop("x")))
}
ms <- f()
ev <- everywhere(TRUE)
vals <- list(ms$ok[], ms$bad[], ev[])
daemons(0)
save_out(list(url = url, ids = c(attr(ms$ok, "id"), attr(ms$bad, "id"), attr(ev[[1L]], "id")),
              pid = Sys.getpid(), values = vals))
)--")
  out <- r$out
  spans <- r$spans
  expect_identical(out$values[[1L]], 2)
  expect_true(is_mirai_error(out$values[[2L]]))
  expect_true(all(spans$pid == out$pid))
  set <- one_span(spans, sprintf("daemons set %s", out$url))
  expect_identical(set$attrs[[1L]],
                   list(server.address = sub("^inproc://", "", out$url), network.transport = "inproc",
                        mirai.dispatcher = FALSE, mirai.compute = "default"))
  expect_identical(one_span(spans, sprintf("daemons reset %s", out$url))$links[[1L]], set$id)
  outer <- one_span(spans, "outer")
  ok <- mirai_span(spans, out$ids[1L])
  bad <- mirai_span(spans, out$ids[2L])
  ev <- mirai_span(spans, out$ids[3L])
  expect_identical(c(ok$parent, bad$parent), c(outer$id, outer$id))
  expect_identical(ok$trace, outer$trace)
  expect_identical(ev$parent, "")
  expect_identical(eval_child(spans, ok$id)$kind, KIND_SERVER)
  expect_false(eval_child(spans, ok$id)$status == STATUS_ERROR)
  expect_identical(eval_child(spans, bad$id)$description, "miraiError")
  expect_identical(nrow(eval_child(spans, ev$id)), 1L)
  expect_identical(sum(spans$name == "daemon eval"), 3L)
  expect_false(any(startsWith(spans$name, "daemon connect")))
})

test_that("local daemons without dispatcher trace; abstract URLs have no port", {
  skip_otel()
  skip_if_not(Sys.info()[["sysname"]] == "Linux")
  r <- run_scenario(r"--(
library(mirai)
daemons(1, dispatcher = FALSE)
url <- status()$daemons
m <- mirai(Sys.getpid())
pid <- m[]
daemons(0)
# the daemon records its disconnect as it exits
deadline <- Sys.time() + 30
while (tools::pskill(pid, 0L) && Sys.time() < deadline) Sys.sleep(0.05)
save_out(list(url = url, pid = pid, id = attr(m, "id")))
)--")
  out <- r$out
  spans <- r$spans
  name <- sub("^abstract://", "", out$url)
  attrs <- list(server.address = name, network.transport = "abstract")
  set <- one_span(spans, sprintf("daemons set %s", out$url))
  expect_identical(set$attrs[[1L]], c(attrs, list(mirai.dispatcher = FALSE, mirai.compute = "default")))
  connect <- one_span(spans, sprintf("daemon connect %s", out$url))
  expect_identical(connect$pid, out$pid)
  expect_identical(connect$attrs[[1L]], attrs)
  m <- mirai_span(spans, out$id)
  e <- eval_child(spans, m$id)
  expect_identical(e$pid, out$pid)
  expect_identical(e$links[[1L]], connect$id)
  expect_identical(one_span(spans, sprintf("daemon disconnect %s", out$url))$links[[1L]], connect$id)
})

test_that("with tracing off nothing is recorded and tasks carry no trace context", {
  skip_otel()
  r <- run_scenario(r"--(
library(mirai)
daemons(1)
seen <- mirai(list(exists("._otel_."), ._otel_., mirai:::.otel$on))[]
mp <- mirai_map(1:2, function(x) get("._otel_.", envir = parent.frame()))[]
ev <- everywhere(TRUE)[]
daemons(0)
daemons(sync = TRUE)
sync_seen <- mirai(._otel_.)[]
daemons(0)
save_out(list(on = mirai:::.otel$on, seen = seen, mp = mp, sync_seen = sync_seen))
)--", tracing = FALSE)
  expect_identical(nrow(r$spans), 0L)
  expect_false(r$out$on)
  expect_identical(r$out$seen, list(TRUE, NULL, FALSE))
  expect_identical(r$out$mp, list(NULL, NULL))
  expect_null(r$out$sync_seen)
})

test_that("URL attributes: host or path, integer port when present, scheme as written", {
  attrs <- mirai:::.otel_url_attributes
  expect_identical(attrs("tcp://10.0.0.1:5555"),
                   list(server.address = "10.0.0.1", server.port = 5555L, network.transport = "tcp"))
  expect_identical(attrs("tls+tcp://host.example:443"),
                   list(server.address = "host.example", server.port = 443L, network.transport = "tls+tcp"))
  expect_identical(attrs("tcp://[::1]:5555"),
                   list(server.address = "::1", server.port = 5555L, network.transport = "tcp"))
  expect_identical(attrs("ws://host:8080/path"),
                   list(server.address = "host", server.port = 8080L, network.transport = "ws"))
  expect_identical(attrs("wss://host/path"), list(server.address = "host", network.transport = "wss"))
  expect_identical(attrs("ws://:5555/path"),
                   list(server.address = "/path", server.port = 5555L, network.transport = "ws"))
  expect_identical(attrs("ipc:///tmp/sock"), list(server.address = "/tmp/sock", network.transport = "ipc"))
  expect_identical(attrs("abstract://abc123"), list(server.address = "abc123", network.transport = "abstract"))
})
