#' Daemons (Set Persistent Processes)
#'
#' Set daemons: persistent background processes that receive and evaluate
#' [mirai()] tasks. `daemons(n)` starts `n` local daemons and returns once
#' they have all connected; `daemons(url = ...)` listens at a URL for
#' daemons dialling in from anywhere (launched with [launch_remote()] or
#' by hand). Setting daemons again replaces the existing ones;
#' `daemons(0)` resets.
#'
#' Each compute profile (`.compute`) is an independent pool of daemons;
#' several can coexist. Daemons exit by themselves when the host session
#' ends or their connection drops, leaving no orphan processes.
#'
#' Each daemon connection needs a file descriptor, so when a host starts
#' listening it raises this R process's soft limit on open files to the
#' hard limit (once), and it caps connections still in their handshake so
#' that unauthenticated peers cannot exhaust the descriptors R needs.
#'
#' With the dispatcher (the default), tasks wait in a queue inside this
#' session and go first-in first-out to whichever daemon is free. This
#' brings cancellation ([stop_mirai()], `.timeout`), a memory budget for
#' queued tasks, and the task counts of [status()]. Without it, tasks are
#' dealt round-robin to the connected daemons at once.
#'
#' @param n integer number of local daemons to launch; `0` resets the
#'   profile (daemons exit, unresolved mirai resolve to 'errorValue' 19);
#'   `NULL` resets and also sends explicit exit signals (for daemons
#'   started with `autoexit = FALSE`). With `url`, the number of remote
#'   daemons to launch through `remote`.
#' @param url (optional) the URL to listen at for daemons, e.g.
#'   `"tcp://10.75.32.70:5555"` or `host_url()` (port 0 picks a free port;
#'   an empty host listens on every interface). No local daemons are
#'   launched. See [host_url()] and [local_url()].
#' @param remote (optional, with `url`) a launch configuration for starting
#'   daemons on other machines (see [launch_remote()]).
#' @param dispatcher logical: `TRUE` queues tasks at a dispatcher that sends
#'   them first-in first-out to free daemons; `FALSE` deals tasks to the
#'   connected daemons round-robin.
#' @param ... daemon settings passed to [daemon()] on its command line:
#'   `asyncdial`, `autoexit`, `cleanup`, `output`, `idletime`, `walltime`,
#'   `maxtasks`, and `tlscert` (kept as the profile's TLS setting). Only
#'   logical and numeric values are passed; other names are passed on too
#'   (daemon() ignores what it does not know).
#' @param sync logical: `TRUE` evaluates each mirai synchronously in the
#'   current process (for testing and debugging, `browser()` works). Other
#'   arguments but `seed` and `.compute` are then ignored.
#' @param seed `NULL` gives each daemon its own L'Ecuyer-CMRG random number
#'   stream; an integer gives each mirai its own stream instead, so results
#'   are reproducible whichever daemon runs them.
#' @param memory (dispatcher) budget in MB (1e6 bytes) for the task payloads
#'   queued at the dispatcher: while the queued bytes reach it, [mirai()]
#'   waits (backpressure) and [try_mirai()] returns `NULL`. `NULL`, 0,
#'   negative, `NA` or `Inf` mean unbounded.
#' @param serial (dispatcher) a custom serialization configuration made by
#'   [serial_config()], applied to tasks and their results; `NULL` uses the
#'   configurations added by [register_serial()], if any. Ignored without
#'   dispatcher.
#' @param tls for secure URLs (`tls+tcp://`, `wss://`): `NULL` (default)
#'   makes single-use credentials automatically (zero configuration: see
#'   Details); or the host's certificate and private key, either a path to
#'   one PEM file holding the certificate (optionally followed by the rest
#'   of its chain) and the key, or a length-2 character vector of the
#'   certificate (chain) and the key, each as PEM text or a file path.
#'   Daemons then need the certificate authority's chain as `tlscert` (see
#'   [daemon()]), given in `...` here or to the launchers.
#' @param pass (when `tls` has an encrypted private key) a function
#'   returning its password, so the password is not kept in a variable or
#'   the history. Only encrypted PKCS#8 keys ('ENCRYPTED PRIVATE KEY') are
#'   read.
#' @param retry (dispatcher) a non-negative integer: a task whose daemon dies
#'   or disconnects before returning its result is queued again, at the
#'   head, up to `retry` times, and only then resolves to 'errorValue' 19.
#'   [status()] then also gives `retries`, the number of tasks queued again.
#'   An extension of this package.
#' @param .compute character name of the compute profile (`NULL` for the
#'   current profile, by default "default").
#' @details The handshake authenticates both sides: a daemon proves it knows
#'   the profile's secret, and the host proves it to the daemon first (a
#'   daemon refuses a host that cannot). It does not protect what follows:
#'   over plain `tcp://` or `ws://`, tasks and results travel unencrypted
#'   and could be read or altered on the network path. Use `tls+tcp://` or
#'   `wss://` on networks you do not trust.
#'
#'   With a secure URL and `tls = NULL`, the host makes a
#'   single-use certificate authority and signs with it a certificate
#'   naming the URL's host. The authority's key is discarded at once and
#'   the host's key never leaves the host process; daemons launched for the
#'   profile are given the authority's certificate (as `tlscert`) and accept
#'   only this host. The commands [launch_remote()] prints carry it too.
#'
#'   Half-open connections (a daemon's machine or the network vanishing
#'   without closing the connection) are detected: TCP connections use
#'   keepalive (first probe after 10 s idle, then every 5 s, 3 probes) and,
#'   on Linux, a 25 s limit on unacknowledged data; in addition host and
#'   daemon each send a small heartbeat after 5 s without writing, and take
#'   20 s without hearing anything from the other side as a dead
#'   connection. The host then drops the daemon (its task resolves to
#'   'errorValue' 19, or is retried with `retry`) and the daemon stops as
#'   if its host had closed. A daemon busy with a long task keeps
#'   answering, so long tasks are not affected.
#'
#' @return Invisibly, logical `TRUE` (class 'miraiDaemons', usable with
#'   [with()]) when daemons are set, `FALSE` on reset.
#' @examples
#' \donttest{
#' daemons(2, dispatcher = FALSE)
#' status()
#' m <- mirai(Sys.getpid())
#' m[]
#' daemons(0)
#'
#' with(daemons(1, dispatcher = FALSE), mirai(1 + 1)[])
#' }
#' @export
daemons <- function(n, url = NULL, remote = NULL, dispatcher = TRUE, ..., sync = FALSE,
                    seed = NULL, memory = NULL, serial = NULL, tls = NULL, pass = NULL,
                    retry = 0L, .compute = NULL) {
  name <- .profile_name(.compute)
  if (!is.numeric(retry) || length(retry) != 1L || is.na(retry) || retry < 0)
    stop("`retry` must be a non-negative integer")
  if (isTRUE(sync)) {
    .reset(name, exit = FALSE)
    stream <- .initial_stream(seed)
    .set_profile(name, n = 1L, url = sprintf("inproc://%s", .Call(wrap__random_hex, 12L)),
                 sync = TRUE, seed = seed, stream = stream, dots = "")
    ..[[name]]$globals <- new.env(parent = .GlobalEnv)
    return(invisible(.daemons_value(name)))
  }
  settings <- .daemon_settings(list(...))
  if (retry > 0 && !isTRUE(dispatcher)) stop("`retry` requires dispatcher")
  retry <- as.integer(retry)
  if (is.null(url)) {
    if (is.null(n)) return(invisible(.reset(name, exit = TRUE)))
    if (!is.numeric(n)) stop(.messages$numeric_n)
    n <- as.integer(n[1L])
    if (is.na(n) || n < 0L) stop(.messages$n_zero)
    if (n == 0L) return(invisible(.reset(name, exit = FALSE)))
    if (.within_map()) stop(.messages$within_map)
    profile <- .start(name, local_url(), dispatcher, memory, seed, settings, NULL, NULL, n, retry,
                      serial)
    .launch_local(profile, n, settings$dots, settings$tlscert)
    .sync_daemons(profile, n, dispatcher)
    return(invisible(.daemons_value(name)))
  }
  if (!is.character(url)) stop(sprintf("`url` must be of type character, not %s", typeof(url)))
  profile <- .start(name, url[1L], dispatcher, memory, seed, settings, tls, pass, 1L, retry,
                    serial)
  if (length(remote)) {
    done <- FALSE
    on.exit(if (!done) .reset(name, exit = FALSE))
    launch_remote(n = n, remote = remote, .compute = name)
    done <- TRUE
  }
  invisible(.daemons_value(name))
}

# daemons()' value once the profile is set (each successful call ends here).
.daemons_value <- function(name) {
  if (.otel$on) .otel_daemons_set(..[[name]])
  structure(TRUE, class = c("miraiDaemons", name))
}

#' @export
print.miraiDaemons <- function(x, ...) print(unclass(x))

# Set up profile `name` listening at `url` (after resetting what it had):
# its host, random-number streams and settings. Returns the profile.
.start <- function(name, url, dispatcher, memory, seed, settings, tls, pass, n, retry, serial) {
  call <- sys.call(-1L)
  memory <- .memory_budget(memory)
  tls <- .host_tls(tls, pass)
  # without dispatcher the configuration is ignored (validated all the same)
  serial <- .serial(serial, call)
  .reset(name, exit = FALSE)
  stream <- .initial_stream(seed)
  # MIRAI_SECRET, if set, is the secret instead of a fresh random one:
  # daemons that outlive their host (autoexit = FALSE) can then serve a
  # new host at the same URL
  host <- tryCatch(
    .Call(wrap__host_listen, url, dispatcher, memory %||% 0, Sys.getenv("MIRAI_SECRET"),
          tls$cert, tls$key, tls$pass, if (dispatcher) stream, retry,
          if (dispatcher) serial),
    error = function(e) .abort(conditionMessage(e), call)
  )
  profile <- .set_profile(name, n = n, url = .Call(wrap__host_url, host), sync = FALSE,
                          seed = seed, stream = stream, dots = settings$dots)
  profile$host <- host
  profile$dispatcher <- if (dispatcher) profile$url
  profile$memory <- if (dispatcher) memory
  profile$tls <- settings$tlscert %||% (if (!is.null(attr(host, "tlscert"))) c(attr(host, "tlscert"), ""))
  profile$retry <- retry
  profile
}

# Record a profile; returns it.
.set_profile <- function(name, n, url, sync, seed, stream, dots) {
  profile <- new.env(parent = emptyenv())
  profile$compute <- name
  profile$n <- n
  profile$url <- url
  profile$sync <- sync
  profile$seed <- seed
  profile$stream <- stream
  profile$dots <- dots
  ..[[name]] <- profile
  .state$profile_names <- union(.state$profile_names, name)
  profile
}

# The memory budget in MB, NULL when unbounded (NULL, 0, negative, NA, Inf).
.memory_budget <- function(memory) {
  if (is.null(memory)) return(NULL)
  if (!(is.numeric(memory) || is.logical(memory)) || length(memory) != 1L)
    .abort("`memory` must be NULL or a number of MB", call = sys.call(-2L))
  memory <- as.double(memory)
  if (is.na(memory) || !is.finite(memory) || memory <= 0) NULL else memory
}

# The host's certificate, key and key password from `tls` and `pass`
# ("" for the certificate: none given).
.host_tls <- function(tls, pass) {
  call <- sys.call(-2L)
  if (!is.null(pass) && !is.function(pass))
    .abort("`pass` must be a function returning the private key's password", call)
  if (is.null(tls)) return(list(cert = "", key = "", pass = NULL))
  if (!is.character(tls) || !length(tls) %in% 1:2 || anyNA(tls))
    .abort("`tls` must be a file path or a length-2 character vector (certificate, key)", call)
  pem <- vapply(tls, .read_pem, character(1L), arg = "tls", USE.NAMES = FALSE)
  password <- if (!is.null(pass)) pass()
  if (!is.null(password) && (!is.character(password) || length(password) != 1L || is.na(password)))
    .abort("`pass` must return the password as a character string", call)
  list(cert = pem[1L], key = pem[length(pem)], pass = password)
}

# PEM text given as text or as the path of a file holding it.
.read_pem <- function(x, arg) {
  if (startsWith(x, "-----BEGIN")) return(x)
  if (!file.exists(x))
    .abort(sprintf("`%s`: '%s' is neither PEM text nor an existing file", arg, x), call = NULL)
  paste(readLines(x, warn = FALSE), collapse = "\n")
}

# The daemon settings of `...` as daemons() keeps them: `tlscert` taken
# out, then only logical and numeric values, rendered for daemon()'s
# command line as ",name=value" in the order given.
.daemon_settings <- function(dots) {
  nms <- names(dots) %||% character(length(dots))
  tlscert <- if ("tlscert" %in% nms) dots[[which(nms == "tlscert")[1L]]]
  keep <- nzchar(nms) & nms != "tlscert" &
    vapply(dots, function(v) (is.logical(v) || is.numeric(v)) && length(v) == 1L, logical(1L))
  values <- vapply(dots[keep], as.character, character(1L))
  rendered <- if (any(keep)) paste0(",", nms[keep], "=", values, collapse = "") else ""
  list(dots = rendered, tlscert = tlscert)
}

# Whether this is the evaluation of a mirai_map() element.
.within_map <- function() on_daemon() && isTRUE(.state$within_map)

# Tear a profile down: daemons drop (or are told to exit), unfinished mirai
# resolve to errorValue 19 by the time this returns. FALSE, as daemons()
# returns on reset.
.reset <- function(name, exit) {
  profile <- ..[[name]]
  if (!is.null(profile)) {
    if (!is.null(profile$host)) .Call(wrap__host_close, profile$host, exit)
    if (.otel$on) .otel_daemons_reset(profile)
    rm(list = name, envir = ..)
  }
  FALSE
}

# Wait until `n` daemons are connected (interruptibly). Without dispatcher
# a message every 10 seconds says how long it has been. Daemon processes
# that all exit before connecting (R or mirai missing, a failing
# .Rprofile, ...) make this fail at once rather than wait forever.
.sync_daemons <- function(profile, n, dispatcher, call = sys.call(-1L)) {
  waited <- 0L
  repeat {
    got <- .Call(wrap__host_wait, profile$host, n, 1000)
    if (got < 0L) .interrupt()
    if (got >= n) return(invisible(got))
    procs <- .Call(wrap__host_processes, profile$host)
    if (procs[2L] >= procs[1L]) {
      .reset(profile$compute, exit = FALSE)
      .abort(sprintf("%d of %d daemon processes exited before connecting (use `output = TRUE` to see their messages)",
                     n - got, n), call)
    }
    waited <- waited + 1L
    if (!dispatcher && waited %% 10L == 0L) message(sprintf(.messages$sync_message, waited))
  }
}

#' @export
with.miraiDaemons <- function(data, expr, ...) {
  name <- class(data)[2L]
  prev <- .state$default_profile
  .state$default_profile <- name
  on.exit({
    .state$default_profile <- prev
    daemons(0L, .compute = name)
  })
  expr
}

#' Status Information
#'
#' `status()` describes a compute profile's connections. `info()` gives its
#' key statistics as a named integer vector. `daemons_set()` tells whether
#' daemons are set; `require_daemons()` errors if not.
#'
#' @param .compute character compute profile name (`NULL` for the
#'   current profile), or a 'miraiCluster'.
#'
#' @return `status()`: a list with `connections` (integer) and `daemons`
#'   (the URL daemons dial, or `0L` when none are set); with dispatcher also
#'   `mirai`, the numbers of tasks `c(awaiting, executing, completed)`
#'   (completed counts tasks finished, errored, cancelled or lost), and
#'   `memory`, the payload bytes waiting in the dispatcher's queue `c(used,
#'   peak, capacity)` in MB (capacity `NA` when unbounded); and, for a
#'   profile that listens, `refused`, the number of peers refused at the
#'   handshake (without the host's secret, of another version, or not
#'   speaking the protocol).
#' @examples
#' \donttest{
#' daemons(1, dispatcher = FALSE)
#' status()
#' info()
#' daemons_set()
#' daemons(0)
#' }
#' @export
status <- function(.compute = NULL) {
  profile <- .profile(.compute)
  if (is.null(profile)) return(list(connections = 0L, daemons = 0L))
  if (profile$sync) return(list(connections = 0L, daemons = profile$url))
  stats <- .Call(wrap__host_stats, profile$host)
  out <- list(connections = as.integer(stats[1L]), daemons = profile$url)
  if (!is.null(profile$dispatcher)) {
    out$mirai <- c(awaiting = as.integer(stats[3L]), executing = as.integer(stats[4L]),
                   completed = as.integer(min(stats[5L], .Machine$integer.max)))
    out$memory <- c(used = stats[6L], peak = stats[7L], capacity = stats[8L]) / 1e6
  }
  out$refused <- as.integer(stats[9L])
  if (isTRUE(profile$retry > 0L)) out$retries <- as.integer(stats[10L])
  out
}

#' @rdname status
#' @return `info()`: named integer vector `c(connections, cumulative,
#'   awaiting, executing, completed)` (the last four `NA` without
#'   dispatcher), or `NULL` when no daemons are set.
#' @export
info <- function(.compute = NULL) {
  profile <- .profile(.compute)
  if (is.null(profile)) return(NULL)
  out <- c(connections = 0L, cumulative = NA_integer_, awaiting = NA_integer_,
           executing = NA_integer_, completed = NA_integer_)
  if (profile$sync) return(out)
  stats <- pmin(.Call(wrap__host_stats, profile$host)[1:5], .Machine$integer.max)
  out[["connections"]] <- as.integer(stats[1L])
  if (!is.null(profile$dispatcher)) out[2:5] <- as.integer(stats[2:5])
  out
}

#' @rdname status
#' @return `daemons_set()`: logical.
#' @export
daemons_set <- function(.compute = NULL) !is.null(.profile(.compute))

#' @rdname status
#' @param call the execution environment of the calling function, for the
#'   error message.
#' @return `require_daemons()`: invisible `TRUE`, or an error.
#' @export
require_daemons <- function(.compute = NULL, call = environment()) {
  if (daemons_set(.compute)) return(invisible(TRUE))
  named <- is.character(.compute)
  msg <- if (named) sprintf("No daemons set for the '%s' compute profile.", .compute) else
    "No daemons set."
  cmd <- if (named) sprintf("mirai::daemons(6, .compute = \"%s\")", .compute) else
    "mirai::daemons(6)"
  if (!.state$cli) stop(sprintf("%s\nUse e.g. %s to set 6 local daemons.", msg, cmd), call. = FALSE)
  cli::cli_abort(c(msg, sprintf("Use e.g. {.run %s} to set 6 local daemons.", cmd)), call = call)
}

#' With Daemons
#'
#' `with_daemons()` evaluates an expression with a named compute profile as
#' the current one; `local_daemons()` makes it the current one until the
#' calling frame exits. Both error if that profile has no daemons set.
#'
#' @param .compute character compute profile name.
#' @param expr an expression to evaluate.
#' @param frame the frame (environment) to scope the change to.
#' @return `with_daemons()`: the value of `expr`. `local_daemons()`:
#'   invisible `NULL`.
#' @examples
#' \donttest{
#' daemons(1, dispatcher = FALSE, .compute = "cpu")
#' with_daemons("cpu", mirai(Sys.getpid())[])
#' daemons(0, .compute = "cpu")
#' }
#' @export
with_daemons <- function(.compute, expr) {
  require_daemons(.compute, call = environment())
  prev <- .state$default_profile
  .state$default_profile <- .compute
  on.exit(.state$default_profile <- prev)
  expr
}

#' @rdname with_daemons
#' @export
local_daemons <- function(.compute, frame = parent.frame()) {
  require_daemons(.compute, call = frame)
  prev <- .state$default_profile
  .state$default_profile <- .compute
  restore <- function() .state$default_profile <- prev
  # run before exit handlers registered earlier, so nested calls unwind
  # in order
  do.call(on.exit, list(as.call(list(restore)), add = TRUE, after = FALSE), envir = frame)
  invisible()
}
