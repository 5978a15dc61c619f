#' Daemon Instance
#'
#' Starts a daemon: a persistent background process that dials the host at
#' `url`, then receives, evaluates and returns tasks until the connection
#' ends or a limit is reached. [daemons()] and the launchers start daemons
#' with this function; call it directly only to deploy daemons by hand.
#'
#' @param url the host URL to dial, e.g. `"tcp://10.75.32.70:5555"`. The
#'   host admits only daemons that prove they know its secret, which
#'   `daemon()` reads from the environment variable `MIRAI_SECRET` (the
#'   commands from [launch_remote()] set it). The handshake authenticates
#'   both sides: with a secret, `daemon()` also requires the host to prove
#'   it knows it, and errors with "the host at `url` did not prove it knows
#'   the secret: refusing it" otherwise, before running any task. Plain
#'   `tcp://` does not protect the connection after the handshake (tasks
#'   and results travel unencrypted and could be read or altered on the
#'   path): use `tls+tcp://` or `wss://` on untrusted networks.
#' @param dispatcher logical: whether the host uses a dispatcher (which
#'   then sends this daemon its random-number stream when it connects).
#' @param ... ignored: other settings a launcher may pass.
#' @param asyncdial logical: `FALSE` (default) makes a single attempt to
#'   connect and errors if it fails; `TRUE` keeps trying in the background
#'   until the host appears.
#' @param autoexit logical: `TRUE` (or any non-zero number) exits when the
#'   connection to the host drops (forcefully, after a short grace period,
#'   if a task is still running); `NA` first finishes the task in progress
#'   and then returns; `FALSE` (or 0) persists and serves a new host at the
#'   same URL (ended by `daemons(NULL)`).
#' @param cleanup logical: after each task, remove the global variables it
#'   created and detach the packages it attached (variables that existed
#'   before keep the values the task gave them; options are not reset).
#' @param output logical: keep the daemon's stdout and stderr (for local
#'   daemons they are shown in the host's console).
#' @param idletime maximum idle time between tasks (ms) before exiting.
#' @param walltime soft maximum running time (ms): the daemon exits after
#'   the task it receives once it is exceeded.
#' @param maxtasks maximum number of tasks before exiting.
#' @param tlscert for secure URLs (`tls+tcp://`, `wss://`): the certificate
#'   authority chain the host's certificate must be signed by, as a path to
#'   a PEM file, or a length-2 character vector of the PEM text and `""`.
#'   Daemons launched by [daemons()] and the launchers receive it
#'   automatically when the host made its own credentials. `NULL` trusts
#'   the system's certificate authorities.
#' @param rs the initial value of `.Random.seed` (an L'Ecuyer-CMRG stream,
#'   as from [nextstream()]); takes precedence over the dispatcher's.
#'
#' @return Invisibly, an integer exit code: 0 connection ended, 1 idletime
#'   (or walltime, while idle) reached, 2 walltime, 3 maxtasks reached (see
#'   [nextcode()]).
#' @examples
#' \dontrun{
#' # on a remote machine, dialling a host set with daemons(url = ...)
#' daemon("tcp://10.75.32.70:5555")
#' }
#' @export
daemon <- function(url, dispatcher = TRUE, ..., asyncdial = FALSE, autoexit = TRUE,
                   cleanup = TRUE, output = FALSE, idletime = Inf, walltime = Inf,
                   maxtasks = Inf, tlscert = NULL, rs = NULL) {
  if (!is.character(url) || length(url) != 1L || is.na(url))
    stop("`url` must be a character string")
  if (is.numeric(autoexit)) autoexit <- autoexit != 0
  if (!is.logical(autoexit) || length(autoexit) != 1L)
    stop("`autoexit` must be TRUE, NA or FALSE")
  # the secret proving this daemon was launched by its host (see
  # launch_remote()): out of the environment while tasks run, so they
  # cannot read it, and put back when daemon() returns or fails
  secret <- Sys.getenv("MIRAI_SECRET", unset = NA)
  if (!is.na(secret)) {
    Sys.unsetenv("MIRAI_SECRET")
    on.exit(Sys.setenv(MIRAI_SECRET = secret))
  }
  conn <- .Call(wrap__daemon_dial, url, isTRUE(asyncdial), autoexit, tempdir(),
                if (is.na(secret)) "" else secret, .tlscert_pem(tlscert))
  on.exit(.Call(wrap__daemon_finish, conn), add = TRUE, after = FALSE)
  if (.otel$on) {
    .otel_daemon_connect(url, pending = isTRUE(asyncdial))
    on.exit(.otel_daemon_disconnect(url), add = TRUE)
  }
  if (!isTRUE(output)) {
    devnull <- file(nullfile(), open = "w")
    sink(devnull)
    sink(devnull, type = "message")
    on.exit({ sink(type = "message"); sink(); close(devnull) }, add = TRUE)
  }
  .state$on_daemon <- TRUE
  on.exit(.state$on_daemon <- FALSE, add = TRUE)
  if (is.numeric(rs)) .set_seed(rs)
  wait <- if (idletime > walltime) walltime else if (is.finite(idletime)) idletime else -1
  invisible(.serve(conn, isTRUE(cleanup), as.double(wait), walltime, maxtasks, is.numeric(rs)))
}

# The daemon of an ephemeral mirai: one task, then exit (untraced, as
# its mirai is).
.daemon <- function(url) {
  .otel$on <- FALSE
  daemon(url, dispatcher = FALSE, cleanup = FALSE, maxtasks = 1L)
}

# The PEM text of a daemon's `tlscert` ("" for none).
.tlscert_pem <- function(tlscert) {
  if (is.null(tlscert)) return("")
  if (!is.character(tlscert) || !length(tlscert) %in% 1:2 || anyNA(tlscert))
    stop("`tlscert` must be a file path or a length-2 character vector (PEM text, \"\")",
         call. = FALSE)
  .read_pem(tlscert[1L], "tlscert")
}

.set_seed <- function(stream) {
  RNGkind("L'Ecuyer-CMRG")
  assign(".Random.seed", as.integer(stream), envir = .GlobalEnv)
}

# Task flags (set by the host, see the protocol): keep state, map element.
.flag_map <- 4L
# Task flag: the task names objects shared by its map (see mirai_map()).
.flag_shared <- 8L
# Set by the daemon's core: the host cancelled the task while it waited in
# its run (see src/rust/src/host/dispatcher.rs); answered unevaluated.
.flag_cancelled <- 256L

# The receive-evaluate-reply loop; returns the exit code. The handlers
# that turn a failing task into an error value are set up once for the
# whole loop rather than for each task (they cost more than a tiny task):
# an error unwinds out of the loop, is answered, and the loop resumes.
.serve <- function(conn, cleanup, wait, walltime, maxtasks, rs_given) {
  s <- new.env(parent = emptyenv())
  s$started <- proc.time()[["elapsed"]]
  s$baseline <- if (cleanup) .snapshot()
  s$done <- 0
  s$msg <- NULL
  s$span <- NULL
  repeat {
    value <- tryCatch(
      .serve_tasks(conn, s, cleanup, wait, walltime, maxtasks, rs_given),
      error = function(cnd) {
        if (is.null(s$msg)) stop(cnd)
        .mirai_error(cnd, s$calls)
      },
      interrupt = function(cnd) .mirai_interrupt()
    )
    if (is.null(s$msg)) return(value)
    code <- .finish_task(conn, s, value, cleanup, maxtasks)
    if (!is.null(code)) return(code)
  }
}

# Serve tasks until an exit code (returned) or a task's error or interrupt
# (which unwinds to .serve() with `s$msg` the task). Between tasks an
# interrupt (a cancellation that arrived as the task finished) is ignored;
# during one, only if the core says it was not meant for this task.
.serve_tasks <- function(conn, s, cleanup, wait, walltime, maxtasks, rs_given) {
  withCallingHandlers(
    repeat {
      msg <- .Call(wrap__daemon_recv, conn, wait)
      if (!is.null(.otel$pending)) .otel_daemon_arrived(msg)
      if (is.integer(msg)) {
        if (length(msg) == 7L) {
          # a dispatcher's set-up: this daemon's stream
          if (!rs_given) .set_seed(msg)
          if (cleanup) s$baseline <- .snapshot()
          next
        }
        if (msg == -1L) next
        return(if (msg == 1L) 1L else 0L)
      }
      s$msg <- msg
      s$calls <- NULL
      # the limits are checked as a task arrives: this one is then the last
      # (the clock is read only for a finite walltime: it costs more than a
      # tiny task's evaluation)
      s$last <- s$done + 1 >= maxtasks ||
        is.finite(walltime) && 1000 * (proc.time()[["elapsed"]] - s$started) >= walltime
      if (bitwAnd(msg[[2L]], .flag_cancelled)) {
        code <- .finish_task(conn, s, .mirai_interrupt(), cleanup, maxtasks)
        if (!is.null(code)) return(code)
        next
      }
      ._mirai_. <- if (msg[[6L]]) .Call(wrap__daemon_task, conn) else unserialize(msg[[4L]])
      if (msg[[5L]]) {
        why <- .Call(wrap__daemon_fill_raw, conn, msg[[1L]], ._mirai_.)
        if (identical(why, -1L)) return(0L)
        if (is.character(why)) stop(why, call. = FALSE)
      }
      if (bitwAnd(msg[[2L]], .flag_shared)) {
        why <- .Call(wrap__daemon_resolve_shared, ._mirai_.)
        if (is.character(why)) stop(why, call. = FALSE)
      }
      .set_globals(._mirai_.[["._globals_."]])
      .state$within_map <- bitwAnd(msg[[2L]], .flag_map) != 0L
      if (.otel$on) s$span <- .otel_eval_span(._mirai_.[["._otel_."]])
      value <- if (is.null(s$span)) eval(._mirai_.[["._expr_."]], envir = ._mirai_., enclos = globalenv()) else
        .otel_eval(s$span, eval(._mirai_.[["._expr_."]], envir = ._mirai_., enclos = globalenv()))
      ._mirai_. <- NULL
      code <- .finish_task(conn, s, value, cleanup, maxtasks)
      if (!is.null(code)) return(code)
      # nothing keeps the task's objects now: a large one can be collected
      # before the next task arrives
      msg <- value <- NULL
    },
    error = function(cnd) if (!is.null(s$msg)) s$calls <- sys.calls(),
    interrupt = function(cnd) {
      if (is.null(s$msg) || !.Call(wrap__daemon_interrupt_verdict, conn))
        invokeRestart("resume")
    }
  )
}

# After a task: send its value back (a value that cannot be sent is
# answered with a miraiError saying why), restore the daemon's state and
# count the task; an exit code once a limit is reached (the limit task's
# result is delivered first, and no cleanup follows it).
.finish_task <- function(conn, s, value, cleanup, maxtasks) {
  msg <- s$msg
  s$msg <- NULL
  .state$within_map <- FALSE
  if (!is.null(s$span)) s$span <- .otel_eval_end(s$span, value)
  why <- .Call(wrap__daemon_send, conn, msg[[1L]], msg[[3L]], value, is_error_value(value))
  # the serialization configuration failed on the value: this daemon has
  # left its host, which resolves the task as lost with its daemon
  if (identical(why, -1L)) return(0L)
  if (!is.null(why))
    .Call(wrap__daemon_send, conn, msg[[1L]], msg[[3L]], .mirai_error(simpleError(why), list()), TRUE)
  s$done <- s$done + 1
  if (s$last) return(if (s$done >= maxtasks) 3L else 2L)
  if (cleanup)
    s$baseline <- if (bitwAnd(msg[[2L]], .flag_keep_state)) .snapshot() else .cleanup(s$baseline)
  NULL
}

# A task's globals go to the global environment (a task's own stream
# among them, as `.Random.seed`).
.set_globals <- function(globals) {
  if (!length(globals)) return()
  if (!is.null(globals[[".Random.seed"]]) && RNGkind()[1L] != "L'Ecuyer-CMRG")
    RNGkind("L'Ecuyer-CMRG")
  list2env(globals, envir = .GlobalEnv)
}

# Evaluate one task payload (see `.payload()`) in a synchronous profile:
# its globals go to the global environment, its `.args` are local to the
# evaluation. Errors and interrupts come back as values.
.evaluate <- function(._mirai_., flags) {
  .set_globals(._mirai_.[["._globals_."]])
  .state$within_map <- bitwAnd(flags, .flag_map) != 0L
  on.exit(.state$within_map <- FALSE)
  span <- if (.otel$on) .otel_eval_span(._mirai_.[["._otel_."]])
  calls <- NULL
  value <- tryCatch(
    withCallingHandlers(
      if (is.null(span)) eval(._mirai_.[["._expr_."]], envir = ._mirai_., enclos = globalenv()) else
        .otel_eval(span, eval(._mirai_.[["._expr_."]], envir = ._mirai_., enclos = globalenv())),
      error = function(cnd) calls <<- sys.calls()
    ),
    error = function(cnd) .mirai_error(cnd, calls),
    interrupt = function(cnd) .mirai_interrupt()
  )
  if (!is.null(span)) .otel_eval_end(span, value)
  value
}

# What a daemon restores after each task when `cleanup = TRUE`: the
# global variables and the search path as they were.
.snapshot <- function() list(globals = names(.GlobalEnv), search = search())

# Remove the globals and detach the search path entries added since
# `baseline`; returns the baseline for next time.
.cleanup <- function(baseline) {
  now <- names(.GlobalEnv)
  if (length(now) != length(baseline$globals) || anyNA(match(now, baseline$globals)))
    rm(list = setdiff(now, baseline$globals), envir = .GlobalEnv)
  if (length(search()) != length(baseline$search)) {
    for (entry in setdiff(search(), baseline$search))
      try(detach(entry, character.only = TRUE), silent = TRUE)
  }
  baseline
}

# A synchronous profile's mirai: the task is evaluated here and now, with
# the profile's own global environment in place of the session's.
.sync_mirai <- function(profile, payload, flags) {
  keep <- bitwAnd(flags, .flag_keep_state) != 0L
  if (!is.null(profile$seed) && !keep)
    payload[["._globals_."]][[".Random.seed"]] <- .next_stream(profile)
  value <- .with_globals(profile$globals, keep, .evaluate(payload, flags))
  .Call(wrap__mirai_resolved, value)
}

# Evaluate `expr` with the objects of `globals` in the global environment
# instead of the session's own, which are put back exactly afterwards
# (also on error or interrupt). Unless `keep`, the globals the evaluation
# created are then dropped; what remains is stored back in `globals`.
.with_globals <- function(globals, keep, expr) {
  session <- new.env(hash = TRUE, parent = emptyenv())
  was_daemon <- .state$on_daemon
  .move_bindings(.GlobalEnv, session)
  on.exit({
    .move_bindings(.GlobalEnv, globals)
    .move_bindings(session, .GlobalEnv)
    .state$on_daemon <- was_daemon
  })
  .move_bindings(globals, .GlobalEnv)
  baseline <- .snapshot()
  .state$on_daemon <- TRUE
  value <- expr
  if (!keep) .cleanup(baseline)
  value
}

# Move every binding of `from` into `to`, which is empty: copied first,
# then removed, so a failure part way loses nothing.
.move_bindings <- function(from, to) {
  nms <- names(from)
  if (length(nms)) {
    list2env(mget(nms, envir = from), envir = to)
    rm(list = nms, envir = from)
  }
  invisible()
}
