#' Validators for mirai Objects and Error Values
#'
#' `is_mirai()` tests for a 'mirai', `is_mirai_map()` for a 'mirai_map'.
#' `is_mirai_error()` tests for a 'miraiError' (an error in evaluation),
#' `is_mirai_interrupt()` for a 'miraiInterrupt' (the evaluation was
#' interrupted), and `is_error_value()` for any of these or an integer
#' 'errorValue' (5 timed out, 19 connection reset, 20 operation canceled).
#'
#' A 'miraiError' is a character string "Error in <call>: <message>" with
#' attributes `condition.class`, `call`, `message`, `stack.trace` (the calls
#' on the daemon's stack, innermost first) and any extra fields of the
#' original condition, all reachable with `$`. [conditionMessage()] and
#' [conditionCall()] work on it.
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

# Messages of the integer error codes.
.error_messages <- c(
  `5` = "Timed out", `7` = "Object closed", `13` = "Protocol error",
  `19` = "Connection reset", `20` = "Operation canceled"
)

.error_message <- function(code) {
  msg <- .error_messages[as.character(code)]
  if (is.na(msg)) paste("Error code", code) else unname(msg)
}

#' @export
print.errorValue <- function(x, ...) {
  cat(sprintf("'errorValue' int %d | %s\n", as.integer(x), .error_message(x)), file = stdout())
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
.DollarNames.miraiError <- function(x, pattern = "") {
  nms <- setdiff(names(attributes(x)), "class")
  grep(pattern, nms, value = TRUE, fixed = TRUE)
}

#' @export
conditionMessage.miraiError <- function(c) attr(c, "message", exact = TRUE)

#' @export
conditionCall.miraiError <- function(c) attr(c, "call", exact = TRUE)

# Build a miraiError from a condition and the calls on the stack.
.mirai_error <- function(cond, trace) {
  call <- conditionCall(cond)
  msg <- conditionMessage(cond)
  text <- if (is.null(call)) sprintf("Error: %s", msg) else
    sprintf("Error in %s: %s", paste(deparse(call, nlines = 1L), collapse = ""), msg)
  extra <- unclass(cond)
  extra <- extra[setdiff(names(extra), c("message", "call"))]
  do.call(structure, c(list(text,
                            class = c("miraiError", "errorValue", "try-error"),
                            condition.class = class(cond),
                            call = call,
                            message = msg,
                            stack.trace = trace), extra), quote = TRUE)
}

.mirai_interrupt <- function()
  structure("", class = c("miraiInterrupt", "errorValue", "try-error"))
