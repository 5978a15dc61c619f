#' Daemon Instance
#'
#' Starts a daemon: a persistent background process that dials the host at
#' `url`, then receives, evaluates and returns tasks until told to exit or
#' a limit is reached. [daemons()] and the launchers start daemons with
#' this function; call it directly only to deploy daemons by hand.
#'
#' @param url the host URL to dial, e.g. `"tcp://10.75.32.70:5555"`. The
#'   host admits only daemons that prove they know its secret, which `daemon()`
#'   reads from the environment variable `MIRAI_SECRET` (the commands from
#'   [launch_remote()] set it).
#' @param dispatcher logical: whether the host uses a dispatcher.
#' @param ... reserved for future use.
#' @param asyncdial logical: `FALSE` (default) makes a single attempt to
#'   connect and errors if it fails; `TRUE` keeps trying in the background
#'   until the host appears.
#' @param autoexit logical: `TRUE` exits when the connection to the host
#'   drops (forcefully, after a short grace period, if a task is still
#'   running); `NA` first finishes the task in progress; `FALSE` persists and
#'   serves a new host at the same URL.
#' @param cleanup logical: restore the global environment, attached
#'   packages and options after each task.
#' @param output logical: keep the daemon's stdout and stderr (for local
#'   daemons they are shown in the host's console).
#' @param idletime maximum idle time between tasks (ms) before exiting.
#' @param walltime soft maximum running time (ms): the daemon exits after
#'   the task in progress once it is exceeded.
#' @param maxtasks maximum number of tasks before exiting.
#' @param tlscert for secure URLs (`tls+tcp://`, `wss://`): the certificate
#'   authority chain the host's certificate must be signed by, as a path to
#'   a PEM file, or a length-2 character vector of the PEM text and `""`.
#'   Daemons launched by [daemons()] and the launchers receive it
#'   automatically when the host made its own credentials. `NULL` trusts
#'   the system's certificate authorities.
#' @param rs the initial value of `.Random.seed` (set by [daemons()]).
#'
#' @return Invisibly, an integer exit code: 0 connection ended, 1 idletime,
#'   2 walltime, 3 maxtasks reached (see [nextcode()]).
#' @examples
#' \dontrun{
#' # on a remote machine, dialling a host set with daemons(url = ...)
#' daemon("tcp://10.75.32.70:5555")
#' }
#' @export
daemon <- function(url, dispatcher = TRUE, ..., asyncdial = FALSE, autoexit = TRUE,
                   cleanup = TRUE, output = FALSE, idletime = Inf, walltime = Inf,
                   maxtasks = Inf, tlscert = NULL, rs = NULL) {
  if (missing(url) || !is.character(url) || length(url) != 1L || is.na(url))
    stop("`url` must be a single character string", call. = FALSE)
  .check_flag(asyncdial, "asyncdial")
  if (!is.logical(autoexit) || length(autoexit) != 1L)
    stop("`autoexit` must be TRUE, NA or FALSE", call. = FALSE)
  .check_flag(cleanup, "cleanup")
  .check_flag(output, "output")
  .check_limit(idletime, "idletime")
  .check_limit(walltime, "walltime")
  .check_limit(maxtasks, "maxtasks")
  if (!is.null(rs) && (!is.integer(rs) || length(rs) != 7L))
    stop("`rs` must be NULL or an integer L'Ecuyer-CMRG seed of length 7", call. = FALSE)

  # the secret proving this daemon was launched by its host (see
  # launch_remote()): taken out of the environment so tasks cannot read it
  secret <- Sys.getenv("MIRAI_SECRET")
  Sys.unsetenv("MIRAI_SECRET")
  conn <- .Call(wrap__daemon_dial, url, asyncdial, autoexit, tempdir(), secret,
                .tlscert_pem(tlscert))
  on.exit(.Call(wrap__daemon_finish, conn))
  if (!output) {
    devnull <- file(nullfile(), open = "w")
    sink(devnull)
    sink(devnull, type = "message")
    on.exit({ sink(type = "message"); sink(); close(devnull) }, add = TRUE)
  }
  .state$on_daemon <- TRUE
  on.exit(.state$on_daemon <- FALSE, add = TRUE)
  if (!is.null(rs)) {
    RNGkind("L'Ecuyer-CMRG")
    assign(".Random.seed", rs, envir = .GlobalEnv)
  }
  invisible(.serve(conn, cleanup, idletime, walltime, maxtasks))
}

# The PEM text of a daemon's `tlscert` ("" for none).
.tlscert_pem <- function(tlscert) {
  if (is.null(tlscert)) return("")
  .check_tlscert(tlscert)
  .read_pem(tlscert[1L], "tlscert")
}

.check_tlscert <- function(tlscert) {
  if (!is.character(tlscert) || !length(tlscert) %in% 1:2 || anyNA(tlscert))
    stop("`tlscert` must be a file path or a length-2 character vector (PEM text, \"\")",
         call. = FALSE)
}

# The receive-evaluate-reply loop; returns the exit code. The handlers
# that turn a failing task into an error value are set up once for the
# whole loop rather than once per task (they cost more than a tiny task):
# an error unwinds out of the loop, is answered, and the loop resumes.
.serve <- function(conn, cleanup, idletime, walltime, maxtasks) {
  s <- new.env(parent = emptyenv())
  s$snapshot <- if (cleanup) .snapshot()
  s$started <- proc.time()[["elapsed"]]
  s$done <- 0
  s$in_task <- FALSE
  repeat {
    s$trace <- NULL
    out <- tryCatch(
      .serve_tasks(conn, s, cleanup, idletime, walltime, maxtasks),
      error = function(e) {
        if (!s$in_task) stop(e)
        if (identical(conditionCall(e), .task_call)) e$call <- NULL
        .mirai_error(e, s$trace)
      },
      interrupt = function(cond) .mirai_interrupt()
    )
    if (!s$in_task) return(out)
    code <- .reply(conn, s, out, cleanup, maxtasks)
    if (!is.null(code)) return(code)
  }
}

.serve_tasks <- function(conn, s, cleanup, idletime, walltime, maxtasks) {
  withCallingHandlers(
    repeat {
      wait <- idletime
      if (is.finite(walltime)) {
        left <- walltime - 1000 * (proc.time()[["elapsed"]] - s$started)
        if (left <= 0) return(2L)
        wait <- min(wait, left)
      }
      msg <- .Call(wrap__daemon_recv, conn, if (is.finite(wait)) wait else -1)
      if (is.integer(msg)) {
        if (msg == 1L) return(if (wait < idletime) 2L else 1L)
        if (msg == -1L) next
        return(0L)
      }
      s$msg <- msg
      if (length(msg) == 5L) {
        value <- .mirai_error(simpleError(msg[[5L]]), list())
      } else {
        s$in_task <- TRUE
        value <- .eval_in(msg[[4L]], .GlobalEnv)
      }
      code <- .reply(conn, s, value, cleanup, maxtasks)
      if (!is.null(code)) return(code)
      # nothing keeps the task's objects now: a large one can be collected
      # before the next task arrives
      value <- msg <- NULL
    },
    error = function(e) if (s$in_task) s$trace <- .stack_trace()
  )
}

# Send a task's value back, restore the daemon's state, count the task;
# returns an exit code once `maxtasks` is reached. The task counts as in
# progress until its value is sent: an interrupt (a cancellation) or an
# error before that is answered in its place.
.reply <- function(conn, s, value, cleanup, maxtasks) {
  msg <- s$msg
  s$in_task <- TRUE
  .Call(wrap__daemon_send, conn, msg[[1L]], msg[[3L]], value, is_error_value(value))
  s$in_task <- FALSE
  s$msg <- NULL
  if (cleanup) {
    s$snapshot <- if (msg[[2L]] == 1L) .snapshot() else .restore(s$snapshot)
  }
  s$done <- s$done + 1
  if (s$done >= maxtasks) 3L
}

# Set up and evaluate one task: list(expr, globals, args, seed). `...`
# objects go to `genv` (the global environment on a daemon), `.args` to a
# fresh local environment.
.eval_in <- function(task, genv) {
  if (length(task[[2L]])) list2env(task[[2L]], envir = genv)
  env <- new.env(parent = genv)
  if (length(task[[3L]])) list2env(task[[3L]], envir = env)
  if (!is.null(task[[4L]])) {
    if (RNGkind()[1L] != "L'Ecuyer-CMRG") RNGkind("L'Ecuyer-CMRG")
    assign(".Random.seed", task[[4L]], envir = .GlobalEnv)
  }
  eval(task[[1L]], env)
}

# Evaluate one task with errors and interrupts returned as values (for
# synchronous profiles; daemons handle these once around their loop).
.eval_task <- function(task, genv) {
  trace <- NULL
  tryCatch(
    withCallingHandlers(.eval_in(task, genv), error = function(e) trace <<- .stack_trace()),
    error = function(e) {
      # an error raised at the top of the task has no call of its own
      if (identical(conditionCall(e), .task_call)) e$call <- NULL
      .mirai_error(e, trace)
    },
    interrupt = function(cond) .mirai_interrupt()
  )
}

.task_call <- quote(eval(task[[1L]], env))

# The calls between the task's own evaluation and the error handler,
# innermost first, without the condition-handling machinery.
.stack_trace <- function() {
  calls <- sys.calls()
  calls <- calls[seq_len(length(calls) - 2L)] # this function and the handler
  top <- 0L
  for (i in seq_along(calls)) if (identical(calls[[i]], .task_call)) top <- i
  calls <- calls[-seq_len(top)]
  machinery <- c(".handleSimpleError", "h", "stop", "signalCondition", "warning")
  drop <- vapply(calls, function(cl) is.symbol(cl[[1L]]) && as.character(cl[[1L]]) %in% machinery,
                 logical(1L))
  rev(calls[!drop])
}

# State a daemon restores after each task when `cleanup = TRUE`. Cheap
# checks first: the restore runs after every task.
.snapshot <- function() list(
  globals = names(.GlobalEnv),
  search = search(),
  options = as.list(.Options)
)

# Returns the snapshot to compare against next time.
.restore <- function(snapshot) {
  now <- names(.GlobalEnv)
  if (length(now) != length(snapshot$globals) || anyNA(match(now, snapshot$globals))) {
    extra <- setdiff(now, c(snapshot$globals, ".Random.seed"))
    if (length(extra)) rm(list = extra, envir = .GlobalEnv)
  }
  if (length(search()) != length(snapshot$search)) {
    for (pkg in setdiff(search(), snapshot$search)) try(detach(pkg, character.only = TRUE), silent = TRUE)
  }
  if (!.Call(wrap__options_unchanged, snapshot$options)) {
    now <- as.list(.Options)
    added <- setdiff(names(now), names(snapshot$options))
    options(snapshot$options)
    if (length(added)) options(structure(vector("list", length(added)), names = added))
    # the same options again, as objects the next check can compare
    snapshot$options <- as.list(.Options)
  }
  snapshot
}

.check_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x))
    stop(sprintf("`%s` must be TRUE or FALSE", name), call. = FALSE)
}

.check_limit <- function(x, name) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x < 0)
    stop(sprintf("`%s` must be a single non-negative number", name), call. = FALSE)
}

#' Next Code
#'
#' Describes the exit code returned by [daemon()].
#'
#' @param xc integer exit code.
#' @return Character description.
#' @examples
#' nextcode(1L)
#' @export
nextcode <- function(xc) {
  xc <- as.integer(xc)
  switch(as.character(xc),
         `0` = "0 | Daemon connection terminated",
         `1` = "1 | Daemon idletime limit reached",
         `2` = "2 | Daemon walltime limit reached",
         `3` = "3 | Daemon task limit reached",
         sprintf("%d | Unknown exit code", xc))
}
