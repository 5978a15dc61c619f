#' Make a Promise from a mirai
#'
#' Methods for the promises package's [promises::as.promise()] and
#' [promises::is.promising()] generics, so a 'mirai' or 'mirai_map' can be
#' used wherever a promise is expected: with [promises::then()], `%...>%`,
#' [promises::promise_all()], [promises::hybrid_then()], and in Shiny
#' (`ExtendedTask`, render functions, observers). They are registered when
#' promises is loaded; mirai itself neither imports nor loads it.
#'
#' A mirai's promise is made once and cached in the mirai: asking again
#' gives the same promise. It is fulfilled with the mirai's value (a
#' 'miraiInterrupt' value too), and rejected when the value is a
#' 'miraiError' (the reason's message is the error's text) or an integer
#' 'errorValue' (the message is, for example, "5 | Timed out",
#' "19 | Connection reset" or "20 | Operation canceled").
#'
#' Settlement is event-driven: when the result arrives, a callback is
#' queued on later's global event loop, which resolves the promise when the
#' loop next runs (at the idle console, in [later::run_now()], or in a
#' Shiny or httpuv server). Nothing is scheduled or polled while the mirai
#' is pending.
#'
#' The promise of a 'mirai_map' is `promises::promise_all(.list = x)`: a
#' list of the values, with their names, once all are fulfilled, or the
#' first rejection. A new one is made on each call (the elements' own
#' promises are cached).
#'
#' @param x a 'mirai' or 'mirai_map'.
#' @return For `as.promise()`, a 'promise'; for `is.promising()`, `TRUE`.
#' @examples
#' if (interactive() && requireNamespace("promises", quietly = TRUE)) {
#'   library(promises)
#'   m <- mirai({Sys.sleep(0.5); 42})
#'   p <- as.promise(m)
#'   identical(p, as.promise(m))
#'   m %...>% print()
#'   mirai(stop("boom")) %...!% (function(e) cat("rejected:", conditionMessage(e), "\n"))
#'   mirai_map(1:3, function(x) x * 2) %...>% str()
#' }
#' @name as.promise.mirai
#' @method as.promise mirai
#' @rawNamespace S3method(promises::as.promise, mirai)
as.promise.mirai <- function(x) {
  cached <- get0("promise", envir = x, inherits = FALSE)
  if (!is.null(cached)) return(cached)
  .later_loaded()
  settled <- promises::promise(function(resolve, reject)
    .Call(wrap__mirai_on_resolve, x, function() resolve(.subset2(x, "data"))))
  # the rejection is raised in a fulfilment handler, so Shiny keeps its
  # deep stack trace
  promise <- promises::then(settled, onFulfilled = .promise_value)
  assign("promise", promise, envir = x)
  promise
}

#' @rdname as.promise.mirai
#' @method as.promise mirai_map
#' @rawNamespace S3method(promises::as.promise, mirai_map)
as.promise.mirai_map <- function(x) promises::promise_all(.list = x)

#' @rdname as.promise.mirai
#' @method is.promising mirai
#' @rawNamespace S3method(promises::is.promising, mirai)
is.promising.mirai <- function(x) TRUE

#' @rdname as.promise.mirai
#' @method is.promising mirai_map
#' @rawNamespace S3method(promises::is.promising, mirai_map)
is.promising.mirai_map <- function(x) TRUE

# A mirai's value as its promise delivers it: error values other than an
# interrupt become a rejection.
.promise_value <- function(value) {
  if (is_error_value(value) && !is_mirai_interrupt(value)) {
    text <- if (is_mirai_error(value)) as.vector(value) else .error_text(value)
    stop(simpleError(text))
  }
  value
}

# later's C interface is looked up on first use: its namespace (and so its
# DLL) must be loaded by then.
.later_loaded <- function()
  if (!isNamespaceLoaded("later")) loadNamespace("later")
