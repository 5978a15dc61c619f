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
#' the local environment the expression is evaluated in.
#'
#' @param .expr an expression to evaluate asynchronously (of arbitrary
#'   length, wrapped in `{ }` where necessary), **or else** a pre-constructed
#'   language object (or a symbol bound to one in the calling frame).
#' @param ... (optional) named arguments (name = value pairs) specifying
#'   objects referenced, but not defined, in `.expr`, **or** a single
#'   environment whose objects are all passed. Placed in the daemon's global
#'   environment.
#' @param .args (optional) a named list or an environment of objects
#'   referenced in `.expr`, placed in the local evaluation environment.
#' @param .timeout (optional) integer milliseconds after which the mirai
#'   resolves to an 'errorValue' 5 (timed out). `NULL` for no timeout.
#' @param .compute character value for the compute profile to use (`NULL`
#'   for the default profile).
#'
#' @return A 'mirai' object (invisibly). Its value is at `$data`: an
#'   'unresolved' logical NA while pending, then the result (or an
#'   'errorValue' / 'miraiError' / 'miraiInterrupt'). `m[]` waits for it.
#'   `attr(m, "id")` is an integer task id.
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
  if (missing(.expr)) stop(.messages$missing_expression, call. = FALSE)
  expr <- substitute(.expr)
  if (is.symbol(expr) || is.call(expr) && identical(expr[[1L]], quote(quote)))
    expr <- .task_expr(expr, parent.frame())
  task <- .make_task(expr, list(...), .args, .timeout)
  # the common case inline: daemons set, no timeout or per-task seed
  profile <- ..[[if (is.null(.compute)) .state$default_profile else .profile_name(.compute)]]
  if (is.null(profile) || profile$sync || profile$per_task_seed || !is.null(.timeout) ||
      !is.null(profile$memory))
    return(.submit(task, .timeout, .compute))
  invisible(.Call(wrap__host_submit, profile$host, task, -1, FALSE))
}

#' @rdname mirai
#' @details With a dispatcher memory budget (`daemons(memory = )`), `mirai()`
#'   waits while the payloads queued at the dispatcher fill the budget
#'   (backpressure; Ctrl-C interrupts the wait). `try_mirai()` takes the same
#'   arguments as `mirai()` but returns `NULL` invisibly instead of waiting.
#'   Without a memory budget both always submit at once.
#' @export
try_mirai <- function(.expr, ..., .args = list(), .timeout = NULL, .compute = NULL) {
  if (missing(.expr)) stop(.messages$missing_expression, call. = FALSE)
  expr <- .task_expr(substitute(.expr), parent.frame())
  .submit(.make_task(expr, list(...), .args, .timeout), .timeout, .compute, try = TRUE)
}

# The expression to evaluate: a symbol bound to a language object (or a
# quoted expression) stands for that object.
.task_expr <- function(expr, env) {
  if (is.symbol(expr)) {
    bound <- get0(as.character(expr), envir = env, inherits = TRUE)
    if (is.language(bound)) return(bound)
  } else if (is.call(expr) && identical(expr[[1L]], quote(quote))) {
    return(expr[[2L]])
  }
  expr
}

# Validate a task's parts and bundle them: list(expr, globals, args, seed).
.make_task <- function(expr, dots, args, timeout) {
  if (length(dots) == 1L && is.environment(dots[[1L]]) && is.null(names(dots))) {
    dots <- as.list.environment(dots[[1L]], all.names = TRUE)
  } else if (length(dots) && (is.null(names(dots)) || !all(nzchar(names(dots))))) {
    stop(.messages$named_dots, call. = FALSE)
  }
  if (is.environment(args)) {
    args <- as.list.environment(args, all.names = TRUE)
  } else if (!is.list(args)) {
    stop("`.args` must be a named list or an environment", call. = FALSE)
  } else if (length(args) && (is.null(names(args)) || !all(nzchar(names(args))))) {
    stop(.messages$named_args, call. = FALSE)
  }
  if (!is.null(timeout) && (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout < 0))
    stop("`.timeout` must be NULL or a single non-negative number of milliseconds", call. = FALSE)
  list(expr, dots, args, NULL)
}

# Send a task to the profile's daemons, or to a fresh ephemeral process.
# With `try`, NULL when the dispatcher's memory budget is full.
.submit <- function(task, timeout, .compute, try = FALSE) {
  force(task) # validates the arguments before anything else happens
  profile <- .profile(.compute)
  if (!is.null(profile) && profile$per_task_seed) task[[4L]] <- .next_stream(profile)
  timeout <- if (is.null(timeout)) -1 else as.double(timeout)
  if (is.null(profile)) {
    host <- .Call(wrap__host_listen, local_url(), TRUE, FALSE, 0, "", "", "", NULL)
    m <- .Call(wrap__host_submit, host, task, timeout, FALSE)
    .Call(wrap__host_launch, host, .rscript(), .daemon_args(.Call(wrap__host_url, host),
                                               list(maxtasks = 1L)), FALSE)
    return(invisible(m))
  }
  if (profile$sync) return(invisible(.resolved_mirai(.eval_sync(task))))
  m <- .Call(wrap__host_submit, profile$host, task, timeout, try)
  if (is.integer(m)) .interrupt()
  invisible(m)
}

# A mirai is an environment built by the Rust core, with an active binding
# `data` (see .onLoad) that becomes a plain binding once it resolves. The
# Rust core finds a mirai's state by its "id" attribute.

.resolved_mirai <- function(value) {
  env <- new.env(hash = FALSE, parent = emptyenv())
  env[["data"]] <- value
  .state$sync_id <- (.state$sync_id %||% 0L) + 1L
  attr(env, "id") <- .state$sync_id
  class(env) <- "mirai"
  env
}


#' @export
`[.mirai` <- function(x, i) {
  call_mirai(x)
  .subset2(x, "data")
}

#' @export
print.mirai <- function(x, ...) {
  cat(if (unresolved(x)) "< mirai [] >\n" else "< mirai [$data] >\n", file = stdout())
  invisible(x)
}

#' @export
`$<-.mirai` <- function(x, name, value) stop("a mirai is read-only", call. = FALSE)

#' mirai (Call Value)
#'
#' `call_mirai()` waits for a 'mirai' (or a list of them, or a 'mirai_map')
#' to resolve and returns it invisibly, so `call_mirai(m)$data` is the
#' value. `collect_mirai()` waits and returns the value itself (a list of
#' values for a list or map). Both can be interrupted with Ctrl-C.
#'
#' @param x a 'mirai', a list of 'mirai', or a 'mirai_map'.
#' @param options (for a list or map) collection options: a character
#'   vector such as `c(".stop", ".progress")`, or a named list such as
#'   `list(.stop = TRUE, .progress = TRUE)`. See [mirai_map()].
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
  if (is_mirai(x)) {
    if (!.Call(wrap__aio_wait, x)) .interrupt()
  } else if (is.list(x)) {
    if (length(x) && .Call(wrap__aio_wait_map, x, FALSE, -1) < 0L) .interrupt()
  }
  invisible(x)
}

#' @rdname call_mirai
#' @export
collect_mirai <- function(x, options = NULL) {
  if (is_mirai(x)) return(x[])
  if (!is.list(x)) stop("`x` must be a mirai, a list of mirai or a mirai_map", call. = FALSE)
  .collect_map(x, .map_options(options))
}

#' Query if a mirai is Unresolved
#'
#' Query whether a 'mirai', a 'mirai' value or a list of 'mirai' remains
#' unresolved. Unlike [call_mirai()], this function does not wait.
#'
#' @param x a 'mirai', a list of 'mirai', or a 'mirai' value stored at
#'   `$data`.
#' @return Logical `TRUE` if `x` (or any element of a list) is unresolved,
#'   `FALSE` otherwise.
#' @examples
#' \donttest{
#' m <- mirai(Sys.sleep(0.1))
#' unresolved(m)
#' call_mirai(m)
#' unresolved(m)
#' }
#' @export
unresolved <- function(x) {
  if (is_mirai(x)) return(.Call(wrap__aio_unresolved, x))
  if (inherits(x, "unresolvedValue")) return(TRUE)
  if (is.list(x) && !is.object(x) || is_mirai_map(x)) {
    for (m in x) if (unresolved(m)) return(TRUE)
  }
  FALSE
}

#' mirai (Race)
#'
#' Waits until any 'mirai' in a list resolves, and returns its index.
#'
#' @param x a list of 'mirai' (or a 'mirai_map').
#' @inheritParams mirai
#' @return Integer index of the first resolved 'mirai' (returned at once if
#'   one already is), or `0L` for an empty list.
#' @examples
#' \donttest{
#' daemons(2, dispatcher = FALSE)
#' ms <- list(mirai(Sys.sleep(0.5)), mirai(1))
#' race_mirai(ms)
#' daemons(0)
#' }
#' @export
race_mirai <- function(x, .compute = NULL) {
  if (!daemons_set(.compute)) stop(.messages$requires_daemons, call. = FALSE)
  if (is_mirai(x)) x <- list(x)
  if (!is.list(x)) stop("`x` must be a list of mirai", call. = FALSE)
  if (!length(x)) return(0L)
  i <- .Call(wrap__aio_race, x)
  if (i < 0L) .interrupt()
  i
}

#' mirai (Stop)
#'
#' Stops a 'mirai' if still in progress: it resolves at once to an
#' 'errorValue' 20 (operation canceled). With dispatcher a queued task is
#' removed from the queue and an executing one is interrupted on its daemon,
#' which then serves the next task. Without dispatcher the evaluation itself
#' carries on where it runs, but its result is discarded.
#'
#' @param x a 'mirai' or a list of 'mirai'.
#' @return Invisibly, logical `TRUE` if the cancellation reached an
#'   unfinished task, `FALSE` if it was already resolved (a vector for a
#'   list).
#' @examples
#' \donttest{
#' m <- mirai(Sys.sleep(5))
#' stop_mirai(m)
#' m$data
#' }
#' @export
stop_mirai <- function(x) {
  if (is_mirai(x)) return(invisible(.Call(wrap__aio_cancel, x)))
  if (!is.list(x)) stop("`x` must be a mirai or a list of mirai", call. = FALSE)
  x <- unclass(x)
  # last first, so no queued task starts while the earlier ones are cancelled
  invisible(rev(vapply(rev(x), function(m) is_mirai(m) && stop_mirai(m), logical(1L))))
}

#' On Daemon
#'
#' Whether the code is running inside a daemon.
#'
#' @return Logical `TRUE` when called from a daemon (or an ephemeral mirai
#'   process), `FALSE` otherwise.
#' @examples
#' on_daemon()
#' \donttest{
#' mirai(mirai::on_daemon())[]
#' }
#' @export
on_daemon <- function() isTRUE(.state$on_daemon)
