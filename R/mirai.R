#' mirai (Evaluate Async)
#'
#' Evaluate an expression asynchronously in a new background R process or
#' persistent daemon (local or remote). This function will return
#' immediately with a 'mirai', which will resolve to the evaluated result
#' once complete.
#'
#' All objects required by `.expr` should be passed explicitly: nothing from
#' the calling environment is captured. Objects passed as `...` are placed in
#' the global environment of the evaluation process; objects in `.args` in
#' the local environment the expression is evaluated in. Functions passed
#' either way keep working there.
#'
#' With no daemons set, each mirai starts an ephemeral background process
#' for its one task. With a dispatcher memory budget (`daemons(memory = )`),
#' `mirai()` waits while the queued payloads fill the budget (backpressure;
#' Ctrl-C interrupts the wait); `try_mirai()` returns `NULL` instead.
#'
#' @param .expr an expression to evaluate asynchronously (of arbitrary
#'   length, wrapped in `{ }` where necessary), **or else** a pre-constructed
#'   language object (or a symbol bound to one in the calling frame).
#' @param ... (optional) named arguments (name = value pairs) specifying
#'   objects referenced, but not defined, in `.expr`, **or** an environment
#'   whose objects are all passed. Placed in the daemon's global
#'   environment.
#' @param .args (optional) a named list or named vector, or an environment,
#'   of objects referenced in `.expr`, placed in the local evaluation
#'   environment.
#' @param .timeout (optional) integer milliseconds after which the mirai
#'   resolves to an 'errorValue' 5 (timed out). `NULL` for no timeout. With
#'   a dispatcher the task is also cancelled.
#' @param .compute character value for the compute profile to use (`NULL`
#'   for the current profile, by default "default").
#'
#' @return A 'mirai' object (invisibly). Its value is at `$data`: an
#'   'unresolved' logical NA while pending, then the result (or an
#'   'errorValue' / 'miraiError' / 'miraiInterrupt'). `m[]` waits for it.
#'   `attr(m, "id")` is an integer task id. `try_mirai()` returns `NULL`
#'   (invisibly) when the memory budget is full.
#'
#' @section Errors:
#' An error in the evaluation returns a 'miraiError' (see [is_mirai_error()])
#' carrying the original condition's class, call, message, a stack trace and
#' any extra fields; an interrupt a 'miraiInterrupt'. Other failures return
#' an integer 'errorValue': 5 timed out, 19 connection reset (the daemon
#' died or daemons were reset), 20 operation canceled.
#'
#' @examples
#' \donttest{
#' m <- mirai(x + y + 1, x = 2, y = 3)
#' m[]
#' expr <- quote(a * b)
#' m <- mirai(.expr = expr, .args = list(a = 2, b = 21))
#' call_mirai(m)$data
#' }
#' @export
mirai <- function(.expr, ..., .args = list(), .timeout = NULL, .compute = NULL) {
  if (missing(.expr)) stop(.messages$missing_expression)
  payload <- .task(substitute(.expr), list(...), .args, sys.call(), parent.frame(), environment())
  invisible(.submit(payload, .timeout, .compute, sys.call()))
}

#' @rdname mirai
#' @export
try_mirai <- function(.expr, ..., .args = list(), .timeout = NULL, .compute = NULL) {
  if (missing(.expr)) stop(.messages$missing_expression)
  payload <- .task(substitute(.expr), list(...), .args, sys.call(), parent.frame(), environment())
  invisible(.submit(payload, .timeout, .compute, sys.call(), try = TRUE))
}

# The payload of a task from the arguments of mirai() (or try_mirai(),
# everywhere()): `expr` is its unevaluated `.expr`, except that a symbol
# bound (from `caller`) to a language object stands for that object, read
# as `.expr` in the function's own `frame`. Errors carry `call`.
.task <- function(expr, dots, args, call, caller, frame) {
  globals <- .task_globals(dots, call)
  args <- .task_args(args, call)
  if (is.symbol(expr) && exists(as.character(expr), envir = caller) &&
      is.language(value <- get(".expr", envir = frame)))
    expr <- value
  .payload(expr, globals, args)
}

# The objects of `...` (already evaluated) that go to the daemon's global
# environment: name = value pairs, or all the objects of an environment
# given as the first unnamed argument (minus `.Random.seed`).
.task_globals <- function(dots, call) {
  if (!length(dots)) return(list())
  nms <- names(dots)
  if (is.null(nms)) {
    if (!is.environment(dots[[1L]])) stop(simpleError(.messages$named_dots, call))
    globals <- as.list.environment(dots[[1L]], all.names = TRUE)
    globals[[".Random.seed"]] <- NULL
    return(globals)
  }
  if (!all(nzchar(nms))) stop(simpleError(.messages$named_dots, call))
  dots
}

# The objects of `.args`, local to the evaluation: a named list or named
# vector (one element each), or all the objects of an environment.
.task_args <- function(args, call) {
  if (is.environment(args)) return(as.list.environment(args, all.names = TRUE))
  if (!length(args)) return(list())
  nms <- names(args)
  if (is.null(nms) || !all(nzchar(nms)) || anyNA(nms))
    stop(simpleError(.messages$named_args, call))
  as.list(args)
}

# The task payload a daemon evaluates: the `.args` objects (local) and the
# expression, globals and trace context.
.payload <- function(expr, globals, args)
  c(args, list(._expr_. = expr, ._globals_. = globals, ._otel_. = NULL))

# Task frame flags (see the protocol): keep state (everywhere).
.flag_keep_state <- 1L

# The timeout in ms as the core takes it (-1: none).
.timeout_ms <- function(timeout, call) {
  if (is.null(timeout)) return(-1)
  if (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout < 0)
    stop(simpleError("`.timeout` must be NULL or a non-negative number of milliseconds", call))
  as.double(as.integer(timeout))
}

# Send a task to the profile's daemons, evaluate it at once (sync), or
# start an ephemeral process for it (no daemons set). With `try`, NULL when
# the dispatcher's memory budget is full.
.submit <- function(payload, timeout, .compute, call, try = FALSE, flags = 0L, shared = NULL) {
  timeout <- .timeout_ms(timeout, call)
  profile <- .profile(.compute)
  if (is.null(profile)) {
    url <- local_url()
    return(.Call(wrap__ephemeral_submit, url, payload, timeout, .rscript(),
                 c("-e", sprintf("mirai:::.daemon(\"%s\")", url))))
  }
  .submit_to(profile, payload, timeout, try, flags, shared)
}

# .submit() to a profile already looked up, `timeout` already in ms (a
# map's elements look these up once).
.submit_to <- function(profile, payload, timeout, try = FALSE, flags = 0L, shared = NULL) {
  if (.otel$on) {
    span <- .otel_mirai_span(profile)
    payload[["._otel_."]] <- .otel_context(span)
    on.exit(.otel_mirai_end(span, returnValue()))
  }
  if (profile$sync) return(.sync_mirai(profile, payload, flags))
  if (!is.null(profile$memory)) {
    if (try) {
      if (!.Call(wrap__host_has_room, profile$host)) return(NULL)
    } else if (.Call(wrap__host_wait_room, profile$host) < 0L) {
      .interrupt()
    }
  }
  if (!is.null(profile$seed)) payload[["._globals_."]][[".Random.seed"]] <- .next_stream(profile)
  .Call(wrap__host_submit, profile$host, payload, flags, timeout, shared)
}

#' @export
`[.mirai` <- function(x, i) {
  if (!.Call(wrap__aio_wait, x)) .interrupt()
  .subset2(x, "data")
}

#' @export
print.mirai <- function(x, ...) {
  cat(if (.Call(wrap__aio_unresolved, x)) "< mirai [] >\n" else "< mirai [$data] >\n",
      file = stdout())
  invisible(x)
}

#' mirai (Call Value)
#'
#' `call_mirai()` waits for a 'mirai' (or every 'mirai' in a list, looking
#' into nested lists) to resolve and returns it invisibly, so
#' `call_mirai(m)$data` is the value. `collect_mirai()` waits and returns
#' the value itself (a list of values for a list or 'mirai_map', names
#' kept). Both can be interrupted with Ctrl-C.
#'
#' @param x a 'mirai', a list of 'mirai', or a 'mirai_map'.
#' @param options (for a list or map) collection options: a character
#'   vector such as `c(".stop", ".progress")`, or a named list or vector
#'   whose names select the options, e.g. `list(.stop = TRUE, .progress =
#'   "bar name")` (only the value of `.progress` is used: a progress bar
#'   name, or a list of arguments to `cli::cli_progress_bar()`). See
#'   [mirai_map()]. Ignored for a single 'mirai'.
#'
#' @return `call_mirai()`: `x`, invisibly. `collect_mirai()`: the value(s).
#'
#' @examples
#' \donttest{
#' m <- mirai(1 + 1)
#' call_mirai(m)$data
#' collect_mirai(m)
#' }
#' @export
call_mirai <- function(x) {
  if (is_mirai(x) || is.list(x)) {
    if (!.Call(wrap__aio_wait, x)) .interrupt()
  }
  invisible(x)
}

#' @rdname call_mirai
#' @export
collect_mirai <- function(x, options = NULL) {
  if (is_mirai(x)) return(x[])
  if (!is.list(x)) stop(.messages$not_aio)
  if (length(options)) return(.collect_map(x, .map_options(options)))
  for (m in x) if (!is_mirai(m)) stop(.messages$not_aio)
  if (!.Call(wrap__aio_wait, x)) .interrupt()
  .values(x)
}

# The values of a list of resolved mirai, names kept.
.values <- function(x) {
  out <- lapply(unclass(x), .subset2, "data")
  if (is.null(names(x)) && !is.null(attr(x, "names"))) names(out) <- attr(x, "names")
  out
}

#' Query if a mirai is Unresolved
#'
#' Query whether a 'mirai', a 'mirai' value or a list of 'mirai' remains
#' unresolved. Unlike [call_mirai()], this function does not wait.
#'
#' @param x a 'mirai', a list of 'mirai', or a 'mirai' value stored at
#'   `$data`.
#' @return Logical `TRUE` if `x` (or any element of a list, at its top
#'   level) is unresolved, `FALSE` otherwise.
#' @examples
#' \donttest{
#' m <- mirai(Sys.sleep(0.1))
#' unresolved(m)
#' call_mirai(m)
#' unresolved(m)
#' }
#' @export
unresolved <- function(x) {
  if (is_mirai(x)) return(is.environment(x) && .Call(wrap__aio_unresolved, x))
  if (inherits(x, "unresolvedValue")) return(TRUE)
  if (is.list(x)) {
    if (.Call(wrap__aio_any_unresolved, x)) return(TRUE)
    for (v in x) if (inherits(v, "unresolvedValue")) return(TRUE)
  }
  FALSE
}

#' mirai (Race)
#'
#' Waits until any 'mirai' in a list resolves, and returns its index.
#'
#' @param x a list of 'mirai' (or a 'mirai_map').
#' @inheritParams mirai
#' @return Invisibly, the integer index of the first resolved 'mirai' in
#'   list order (returned at once if one already is), or `0L` if `x` is not
#'   a list or holds no 'mirai'.
#' @examples
#' \donttest{
#' daemons(2, dispatcher = FALSE)
#' ms <- list(mirai(Sys.sleep(0.5)), mirai(1))
#' race_mirai(ms)
#' daemons(0)
#' }
#' @export
race_mirai <- function(x, .compute = NULL) {
  if (!daemons_set(.compute)) stop(.messages$requires_daemons)
  if (!is.list(x) || !length(x)) return(invisible(0L))
  i <- .Call(wrap__aio_race, x, vapply(x, is_mirai, logical(1L), USE.NAMES = FALSE))
  if (i < 0L) .interrupt()
  invisible(i)
}

#' mirai (Stop)
#'
#' Stops a 'mirai' if still in progress: it resolves at once to an
#' 'errorValue' 20 (operation canceled). With dispatcher a queued task is
#' removed from the queue and an executing one is interrupted on its daemon,
#' which then serves the next task. Without dispatcher the evaluation itself
#' carries on where it runs, and its result is discarded.
#'
#' @param x a 'mirai' or a list of 'mirai' (such as a 'mirai_map').
#' @return Invisibly, logical `TRUE` if the cancellation reached a task
#'   queued or executing at a dispatcher, `FALSE` otherwise (already
#'   resolved, no dispatcher, ephemeral, or not a 'mirai'). For a list, a
#'   logical vector of the same length.
#' @examples
#' \donttest{
#' m <- mirai(Sys.sleep(5))
#' stop_mirai(m)
#' m$data
#' }
#' @export
stop_mirai <- function(x) {
  if (is_mirai(x)) return(invisible(is.environment(x) && .Call(wrap__aio_cancel, x)))
  if (!is.list(x) || is.object(x) && !is_mirai_map(x)) return(invisible(FALSE))
  x <- unclass(x)
  out <- logical(length(x))
  # last first, so no queued task starts while the earlier ones are cancelled
  for (i in rev(seq_along(x))) out[i] <- is_mirai(x[[i]]) && stop_mirai(x[[i]])
  invisible(out)
}

#' On Daemon
#'
#' Whether the code is running inside a daemon.
#'
#' @return Logical `TRUE` when called from a daemon (including an ephemeral
#'   one, and the evaluation of a synchronous profile), `FALSE` otherwise.
#' @examples
#' on_daemon()
#' \donttest{
#' mirai(mirai::on_daemon())[]
#' }
#' @export
on_daemon <- function() isTRUE(.state$on_daemon)
