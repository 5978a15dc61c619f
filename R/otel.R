# OpenTelemetry tracing through the otel package (SPEC 6). Whether tracing
# is on is decided once, when the package is loaded (in every process,
# daemons included): when off, each hook elsewhere is a test of `.otel$on`
# (or of a span being NULL) and nothing else happens, the task payload's
# `._otel_.` staying NULL.

# The instrumentation scope otel attributes spans to.
otel_tracer_name <- "org.r-lib.mirai"

.otel <- new.env(parent = emptyenv())
.otel$on <- FALSE
.otel$tracer <- NULL
# in a daemon process: its `daemon connect` span, or the URL it dials
# while the connection (asyncdial) is not yet established
.otel$connect <- NULL
.otel$pending <- NULL

# From .onLoad: tracing is on if otel is installed and its tracer for this
# package is enabled now.
.otel_init <- function() {
  .otel$on <- FALSE
  .otel$tracer <- NULL
  if (!requireNamespace("otel", quietly = TRUE)) return(invisible())
  tracer <- otel::get_tracer(otel_tracer_name)
  if (isTRUE(otel::is_tracing_enabled(tracer))) {
    .otel$tracer <- tracer
    .otel$on <- TRUE
  }
  invisible()
}

# Start a span with this package's tracer. `links` is a list of spans
# (NULL ones dropped); `parent` NULL means the active span, if any.
.otel_start <- function(name, kind = "internal", attributes = NULL, links = NULL, parent = NULL) {
  links <- Filter(Negate(is.null), links)
  options <- list(kind = kind)
  if (!is.null(parent)) options$parent <- parent
  otel::start_span(name, attributes = attributes, links = if (length(links)) links,
                   options = options, tracer = .otel$tracer)
}

# A span that marks a moment: started and ended at once.
.otel_marker <- function(name, attributes = NULL, links = NULL) {
  span <- .otel_start(name, attributes = attributes, links = links)
  span$end()
  span
}

# The attributes describing a URL: `server.address` (the host, or the
# path when the host is empty, as for ipc:// and abstract://),
# `server.port` (integer, absent without a port) and `network.transport`
# (the scheme as written).
.otel_url_attributes <- function(url) {
  scheme <- sub("://.*$", "", url)
  rest <- substring(url, nchar(scheme) + 4L)
  host <- port <- ""
  path <- rest
  if (!scheme %in% c("ipc", "abstract", "inproc")) {
    authority <- sub("/.*$", "", rest)
    path <- substring(rest, nchar(authority) + 1L)
    if (startsWith(authority, "[")) {
      host <- sub("^\\[([^]]*)\\].*$", "\\1", authority)
      port <- sub("^\\[[^]]*\\]:?", "", authority)
    } else {
      host <- sub(":.*$", "", authority)
      if (grepl(":", authority, fixed = TRUE)) port <- sub("^[^:]*:", "", authority)
    }
  }
  attrs <- list(server.address = if (nzchar(host)) host else path)
  port <- suppressWarnings(as.integer(port))
  if (!is.na(port)) attrs$server.port <- port
  attrs$network.transport <- scheme
  attrs
}

# The attributes of a profile's `daemons set` / `daemons reset` spans.
.otel_profile_attributes <- function(profile)
  c(.otel_url_attributes(profile$url),
    list(mirai.dispatcher = !is.null(profile$dispatcher), mirai.compute = profile$compute))

# At the end of a successful daemons(): the profile keeps its `daemons
# set` span, which later spans link to.
.otel_daemons_set <- function(profile) {
  profile$otel_span <- .otel_marker(sprintf("daemons set %s", profile$url),
                                    attributes = .otel_profile_attributes(profile))
  invisible()
}

# When a profile that was set is reset.
.otel_daemons_reset <- function(profile) {
  if (is.null(profile$otel_span)) return(invisible())
  .otel_marker(sprintf("daemons reset %s", profile$url),
               attributes = .otel_profile_attributes(profile),
               links = list(daemons = profile$otel_span))
  invisible()
}

# The `mirai_map` span, active in the frame of mirai_map() (so its element
# mirai spans are its children) and ended when that frame exits.
.otel_map_span <- function(profile, frame = parent.frame()) {
  span <- .otel_start("mirai_map", links = list(daemons = profile$otel_span))
  otel::local_active_span(span, end_on_exit = TRUE, activation_scope = frame)
  invisible()
}

# A `mirai` span for a task about to be submitted to `profile` (a child of
# the active span). Its context goes into the payload as `._otel_.` (see
# .otel_context()), the parent of the daemon's `daemon eval` span.
.otel_mirai_span <- function(profile) {
  .otel_start("mirai", kind = "client", links = list(daemons = profile$otel_span))
}

# The W3C trace context headers (traceparent, tracestate) of `span`.
.otel_context <- function(span) {
  otel::local_active_span(span)
  otel::pack_http_context()
}

# End a `mirai` span once the submission returned `value`: a mirai (or
# the list of an everywhere() call's mirai), whose ids it records.
.otel_mirai_end <- function(span, value) {
  force(value)
  ids <- if (is_mirai(value)) attr(value, "id") else if (is.list(value))
    unlist(lapply(value, attr, "id"), use.names = FALSE)
  if (length(ids)) span$set_attribute("mirai.id", as.integer(ids))
  span$end()
}

# A daemon's `daemon eval` span for a task whose payload carried the trace
# context `headers` (NULL if the host does not trace).
.otel_eval_span <- function(headers) {
  parent <- if (length(headers)) otel::extract_http_context(headers)
  .otel_start("daemon eval", kind = "server", links = list(daemon = .otel$connect),
              parent = parent)
}

# End a `daemon eval` span with the task's value; NULL.
.otel_eval_end <- function(span, value) {
  if (is_mirai_error(value)) span$set_status("error", "miraiError") else
    if (is_mirai_interrupt(value)) span$set_status("error", "miraiInterrupt")
  span$end()
  NULL
}

# Evaluate a task with its `daemon eval` span active, so spans the task
# itself makes are children of it.
.otel_eval <- function(span, expr) otel::with_active_span(span, expr)

# In daemon(): the connection to `url` is established (or, with
# `pending`, will be once the first message arrives).
.otel_daemon_connect <- function(url, pending) {
  .otel$connect <- NULL
  .otel$pending <- NULL
  if (pending) .otel$pending <- url else
    .otel$connect <- .otel_marker(sprintf("daemon connect %s", url),
                                  attributes = .otel_url_attributes(url))
  invisible()
}

# The first message from the host reached a daemon that dialled
# asynchronously: `msg` is a stream or a task, or an integer code (not a
# connection).
.otel_daemon_arrived <- function(msg) {
  if (is.integer(msg) && length(msg) != 7L) return(invisible())
  url <- .otel$pending
  .otel_daemon_connect(url, pending = FALSE)
}

# When daemon() ends: `daemon disconnect`, if it ever connected.
.otel_daemon_disconnect <- function(url) {
  connect <- .otel$connect
  .otel$connect <- NULL
  .otel$pending <- NULL
  if (is.null(connect)) return(invisible())
  .otel_marker(sprintf("daemon disconnect %s", url), attributes = .otel_url_attributes(url),
               links = list(daemon = connect))
  invisible()
}
