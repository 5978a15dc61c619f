#' Validators for mirai Objects and Error Values
#'
#' `is_mirai()` tests for a 'mirai', `is_mirai_map()` for a 'mirai_map'.
#' `is_mirai_error()` tests for a 'miraiError' (an error in evaluation),
#' `is_mirai_interrupt()` for a 'miraiInterrupt' (the evaluation was
#' interrupted), and `is_error_value()` for any of these or an integer
#' 'errorValue' (5 timed out, 19 connection reset, 20 operation canceled).
#'
#' A 'miraiError' is a character string "Error in <call>: <message>" (or
#' "Error: <message>") with the fields of the original condition as
#' attributes (`message`, `call`, and any others), and `condition.class`
#' (the condition's classes) and `stack.trace` (the calls on the daemon's
#' stack, innermost first), all reachable with `$`. [conditionMessage()]
#' and [conditionCall()] work on it. Error values also inherit from
#' 'try-error'.
#'
#' @param x an object.
#' @return Logical value.
#' @examples
#' \donttest{
#' m <- mirai(stop("boom"))
#' call_mirai(m)
#' is_mirai_error(m$data)
#' is_error_value(m$data)
#' m$data$message
#' }
#' @export
is_mirai <- function(x) inherits(x, "mirai")

#' @rdname is_mirai
#' @export
is_mirai_map <- function(x) inherits(x, "mirai_map")

#' @rdname is_mirai
#' @export
is_mirai_error <- function(x) inherits(x, "miraiError")

#' @rdname is_mirai
#' @export
is_mirai_interrupt <- function(x) inherits(x, "miraiInterrupt")

#' @rdname is_mirai
#' @export
is_error_value <- function(x) inherits(x, "errorValue")

# "<code> | <message>" for an integer error code.
.error_text <- function(code) .Call(wrap__error_text, as.integer(code))

#' @export
print.errorValue <- function(x, ...) {
  cat(sprintf("'errorValue' int %s\n", .error_text(x)), file = stdout())
  invisible(x)
}

#' @export
print.miraiError <- function(x, ...) {
  cat(sprintf("'miraiError' chr %s\n", x), file = stdout())
  invisible(x)
}

#' @export
print.miraiInterrupt <- function(x, ...) {
  cat("'miraiInterrupt' chr \"\"\n", file = stdout())
  invisible(x)
}

#' @export
print.unresolvedValue <- function(x, ...) {
  cat("'unresolved' logi NA\n", file = stdout())
  invisible(x)
}

#' @export
`$.miraiError` <- function(x, name) attr(x, name, exact = TRUE)

#' @importFrom utils .DollarNames
#' @export
.DollarNames.miraiError <- function(x, pattern = "")
  grep(pattern, names(attributes(x)), value = TRUE, fixed = TRUE)

#' @export
conditionMessage.miraiError <- function(c) attr(c, "message", exact = TRUE)

#' @export
conditionCall.miraiError <- function(c) attr(c, "call", exact = TRUE)

# The call a daemon evaluates each task with: an error signalled at the
# top level of the task expression has this call, and is reported
# without one ("Error: ...").
.eval_call <- quote(eval(._mirai_.[["._expr_."]], envir = ._mirai_., enclos = globalenv()))

# The first line of a call as error messages show it.
.deparse_call <- function(call)
  deparse(call, width.cutoff = 500L, backtick = TRUE, control = NULL, nlines = 1L)

# A miraiError from a condition and the calls that were on the stack when
# it was signalled (as sys.calls() gave them, outermost first).
.mirai_error <- function(cnd, calls) {
  call <- .subset2(cnd, "call")
  top <- is.null(call) || identical(call, .eval_call)
  text <- if (top) sprintf("Error: %s", .subset2(cnd, "message")) else
    sprintf("Error in %s: %s", .deparse_call(call), .subset2(cnd, "message"))
  fields <- unclass(cnd)
  fields <- fields[!vapply(fields, is.null, logical(1L))]
  if (!is.null(call)) fields[["call"]] <- `attributes<-`(call, NULL)
  fields[["condition.class"]] <- class(cnd)
  fields[["stack.trace"]] <- .task_trace(calls)
  attributes(text) <- fields
  class(text) <- c("miraiError", "errorValue", "try-error")
  text
}

# The task's own calls among `calls`, innermost first: those after the
# daemon's evaluation call, without the handler machinery R adds when a
# condition is signalled (the handler's own call last, and
# .handleSimpleError for errors raised by R itself).
.task_trace <- function(calls) {
  n <- length(calls)
  start <- 0L
  for (i in seq_len(n)) if (identical(calls[[i]], .eval_call)) start <- i
  if (!start || n - 1L <= start) return(list())
  calls <- rev(calls[(start + 1L):(n - 1L)])
  if (identical(calls[[1L]][[1L]], quote(.handleSimpleError))) calls <- calls[-1L]
  lapply(calls, `attributes<-`, NULL)
}

.mirai_interrupt <- function()
  structure("", class = c("miraiInterrupt", "errorValue", "try-error"))
