#' mirai Map
#'
#' Asynchronous parallel map of a function over a list or vector using
#' mirai, one task per element. A data frame or matrix `.x` is mapped over
#' its rows, the row's values becoming the arguments of `.f` (like [Map()]
#' or `purrr::pmap()`); element (row) names are kept. Requires daemons to be
#' set (see [daemons()]).
#'
#' Collect the results with `[]` (the list of values) and the options
#' `.flat` (flatten to a vector), `.progress` (show a progress bar: cli's
#' when installed, otherwise a plain text bar on stderr) and `.stop` (stop
#' at the first error, cancelling the remaining elements, with an R error
#' "In index i: ..."). Options combine: `mp[.stop, .progress]`.
#' [collect_mirai()] takes the same options as a character vector or a
#' named list.
#'
#' @param .x a list or atomic vector, or a data frame or matrix (rows).
#' @param .f a function to apply to each element (row) of `.x`.
#' @param ... (optional) named objects placed in the daemons' global
#'   environment, or a single environment whose objects are all passed.
#' @param .args (optional) a named list of further constant arguments to
#'   `.f`.
#' @param .promise not available in this version.
#' @inheritParams mirai
#'
#' @return A 'mirai_map' (a list of 'mirai' objects), invisibly. Printed as
#'   `< mirai map [k/n] >` with k resolved of n.
#' @examples
#' \donttest{
#' daemons(2, dispatcher = FALSE)
#' mp <- mirai_map(1:4, function(x, y) x + y, .args = list(y = 10))
#' mp[.flat]
#' mirai_map(data.frame(a = 1:2, b = 3:4), function(a, b) a * b)[]
#' daemons(0)
#' }
#' @export
mirai_map <- function(.x, .f, ..., .args = list(), .promise = NULL, .compute = NULL) {
  if (!is.function(.f)) stop(sprintf("`.f` must be of type function, not %s", typeof(.f)), call. = FALSE)
  if (!daemons_set(.compute)) {
    if (on_daemon()) stop(.messages$within_map, call. = FALSE)
    require_daemons(.compute, call = environment())
  }
  if (!is.null(.promise)) stop("`.promise` is not available in this version of mirai", call. = FALSE)
  if (!is.list(.args) || length(.args) && (is.null(names(.args)) || !all(nzchar(names(.args)))))
    stop(.messages$named_args, call. = FALSE)
  template <- .make_task(quote(NULL), list(...), list(), NULL)
  rows <- is.data.frame(.x) || is.matrix(.x)
  if (rows) {
    n <- nrow(.x)
    labels <- if (is.data.frame(.x) && .automatic_rownames(.x)) NULL else rownames(.x)
    elements <- if (is.data.frame(.x)) .df_rows(.x) else lapply(seq_len(n), function(i) .x[i, , drop = TRUE])
    expr <- .row_call(if (is.data.frame(.x)) names(.x) else colnames(.x), ncol(.x), names(.args))
  } else {
    if (!is.vector(.x) && !is.list(.x)) .x <- as.list(.x)
    n <- length(.x)
    labels <- names(.x)
    elements <- if (is.list(.x)) .x else as.list(.x)
    expr <- as.call(c(quote(.f), quote(.x), .arg_symbols(names(.args))))
  }
  template[[1L]] <- expr
  .compute <- .profile_name(.compute)
  out <- vector("list", n)
  for (i in seq_len(n)) {
    task <- template
    task[[3L]] <- c(list(.f = .f, .x = elements[[i]]), .args)
    out[[i]] <- .submit(task, NULL, .compute)
  }
  names(out) <- labels
  invisible(structure(out, class = c("mirai_map", "list")))
}

.arg_symbols <- function(nms) {
  if (!length(nms)) return(list())
  structure(lapply(nms, as.symbol), names = nms)
}

# `.f(.x[[1]], .x[[2]], ...)`, naming arguments by column where named.
.row_call <- function(cols, ncol, argnames) {
  args <- lapply(seq_len(ncol), function(j) call("[[", quote(.x), j))
  if (!is.null(cols)) names(args) <- cols
  as.call(c(quote(.f), args, .arg_symbols(argnames)))
}

.df_rows <- function(df) {
  cols <- lapply(df, function(col) if (is.factor(col)) as.character(col) else col)
  lapply(seq_len(nrow(df)), function(i) lapply(cols, `[[`, i))
}

.automatic_rownames <- function(df) {
  rn <- .row_names_info(df, type = 1L)
  is.integer(rn) && rn < 0L || identical(rownames(df), as.character(seq_len(nrow(df))))
}

#' @export
print.mirai_map <- function(x, ...) {
  n <- length(x)
  done <- .Call(wrap__aio_count_resolved, x)
  cat(sprintf("< mirai map [%d/%d] >\n", done, n), file = stdout())
  invisible(x)
}


#' @export
`[.mirai_map` <- function(x, ...) {
  env <- parent.frame()
  args <- as.list(substitute(list(...)))[-1L]
  args <- args[!vapply(args, function(a) identical(a, quote(expr = )), logical(1L))]
  values <- lapply(args, eval, envir = env)
  if (!all(vapply(values, inherits, logical(1L), "miraiMapOption"))) {
    # ordinary subsetting, e.g. mp[1:2], keeps a mirai_map
    return(structure(do.call(`[`, c(list(unclass(x)), values)), class = class(x)))
  }
  .collect_map(x, .map_options(vapply(values, as.character, character(1L))))
}

#' mirai Map Options
#'
#' Collection options for a 'mirai_map': `x[.flat]`, `x[.progress]`,
#' `x[.stop]`, combined as `x[.stop, .progress]`. See [mirai_map()].
#'
#' @format Objects of class 'miraiMapOption'.
#' @name map_options
#' @export
.flat <- structure(".flat", class = "miraiMapOption")

#' @rdname map_options
#' @export
.progress <- structure(".progress", class = "miraiMapOption")

#' @rdname map_options
#' @export
.stop <- structure(".stop", class = "miraiMapOption")

# Normalise options: a character vector or a named list (purrr passes
# list(.stop = TRUE, .progress = <cli spec>)).
.map_options <- function(options) {
  res <- list(flat = FALSE, progress = FALSE, stop = FALSE)
  if (is.null(options)) return(res)
  if (is.character(options)) {
    bad <- setdiff(options, c(".flat", ".progress", ".stop"))
    if (length(bad)) stop(sprintf("unknown collection option(s): %s", paste(bad, collapse = ", ")), call. = FALSE)
    res$flat <- ".flat" %in% options
    res$progress <- ".progress" %in% options
    res$stop <- ".stop" %in% options
    return(res)
  }
  if (!is.list(options)) stop("`options` must be a character vector or a named list", call. = FALSE)
  res$flat <- isTRUE(options$.flat)
  res$stop <- isTRUE(options$.stop)
  p <- options$.progress
  res$progress <- if (is.null(p) || isFALSE(p)) FALSE else p
  res
}

.collect_map <- function(x, opts) {
  # Rust flags errors only until R has taken a value: look at those first
  r <- if (opts$stop) .first_taken_error(x) else 0L
  bar <- if (!isFALSE(opts$progress) && !r) .progress_bar(length(x), opts$progress, environment())
  if (!r) repeat {
    r <- .Call(wrap__aio_wait_map, x, opts$stop, if (is.null(bar)) -1 else 100)
    if (r == -2L) {
      bar$update(.Call(wrap__aio_count_resolved, x))
      next
    }
    if (r == -1L) {
      if (opts$stop) stop_mirai(x)
      .interrupt()
    }
    break
  }
  if (!is.null(bar)) bar$done()
  if (r > 0L) {
    stop_mirai(x)
    err <- .subset2(x[[r]], "data")
    msg <- if (is_mirai_error(err)) conditionMessage(err) else if (is_mirai_interrupt(err))
      "interrupted" else .error_message(err)
    stop(simpleError(sprintf("In index %d:\n%s", r, msg), call = NULL))
  }
  values <- lapply(x, function(m) .subset2(m, "data"))
  if (opts$flat) values <- .flatten(values)
  values
}

# Index of the first already resolved element holding an error value (0 if
# none). Reading `$data` hands resolved values to R, as collecting would.
.first_taken_error <- function(x) {
  for (i in seq_along(x)) {
    m <- x[[i]]
    if (is_mirai(m) && !unresolved(m) && is_error_value(.subset2(m, "data"))) return(i)
  }
  0L
}

.flatten <- function(values) {
  if (!length(values)) return(values)
  types <- vapply(values, function(v) if (is.atomic(v)) typeof(v) else class(v)[1L], character(1L))
  if (length(unique(types)) != 1L || !all(vapply(values, is.atomic, logical(1L))))
    stop(sprintf("Cannot flatten outputs of differing type: %s",
                 paste(unique(types), collapse = ", ")), call. = FALSE)
  unlist(values, use.names = TRUE)
}

# A progress bar: cli's when available, else a plain text one on stderr.
# `env` is the frame the bar lives as long as.
.progress_bar <- function(total, spec, env) {
  if (requireNamespace("cli", quietly = TRUE)) {
    args <- if (is.list(spec)) spec else if (is.character(spec)) list(name = spec) else list()
    args$total <- total
    args$.envir <- env
    id <- do.call(cli::cli_progress_bar, args)
    return(list(update = function(k) cli::cli_progress_update(id = id, set = k, .envir = env),
                done = function() cli::cli_progress_done(id = id, .envir = env)))
  }
  draw <- function(k) {
    width <- 30L
    filled <- if (total) floor(width * k / total) else width
    cat(sprintf("\r[ %d / %d %s%s ]", k, total, strrep("=", filled), strrep(".", width - filled)), file = stderr())
  }
  draw(0L)
  list(update = draw, done = function() { draw(total); cat("\n", file = stderr()) })
}
