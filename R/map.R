#' mirai Map
#'
#' Asynchronous parallel map of a function over a list or vector using
#' mirai, one task per element. A data frame or matrix `.x` is mapped over
#' its rows, the row's values becoming the arguments of `.f` (as with
#' [Map()] or `purrr::pmap()`). Requires daemons to be set.
#'
#' Each element is evaluated as `do.call(.f, c(list(element), .args), quote
#' = TRUE)` (a row: its columns as the arguments), so unnamed `.args` are
#' passed by position after the element and named ones by name. Objects in
#' `...` go to the daemons' global environments. Names are kept: `names(.x)`
#' for a vector or list, character row names for a data frame, row names
#' for a matrix.
#'
#' Large objects in `...` or `.args` (vectors and lists of 1 MB or more) are
#' serialized once and sent to each daemon once per map, not with every
#' element: each element still sees its own copy, and a daemon lets go of
#' them once the map's tasks are done.
#'
#' Collect the results with `x[]` (the list of values), or with options:
#' `x[.flat]` flattens them to a vector (`unlist(recursive = FALSE)`),
#' erroring if their types differ; `x[.progress]` shows a progress bar
#' (cli's when installed, else a text bar on stderr); `x[.stop]` stops at
#' the first error in index order, cancelling the rest, with an error
#' naming the index. Options combine: `x[.stop, .progress]`.
#' [collect_mirai()] takes the same options as a character vector or named
#' list.
#'
#' @param .x a list or atomic vector, or a data frame or matrix (rows).
#' @param .f a function to apply to each element (row) of `.x`.
#' @param ... (optional) named objects placed in the daemons' global
#'   environment, or an environment whose objects are all passed.
#' @param .args (optional) further arguments to `.f`: a list, or an atomic
#'   vector (one argument per element); named ones are passed by name,
#'   unnamed ones by position.
#' @param .promise (optional) a function to register on each element's
#'   promise as its fulfilment handler, or a list of the fulfilment and
#'   rejection handlers (requires the promises package).
#' @inheritParams mirai
#'
#' @return A 'mirai_map' (a list of 'mirai' objects), invisibly. Printed as
#'   `< mirai map [k/n] >` with k resolved of n.
#' @examples
#' \donttest{
#' daemons(2)
#' mp <- mirai_map(1:4, function(x, y) x + y, .args = list(y = 10))
#' mp[.flat]
#' mirai_map(data.frame(a = 1:2, b = 3:4), function(a, b) a * b)[]
#' daemons(0)
#' }
#' @export
mirai_map <- function(.x, .f, ..., .args = list(), .promise = NULL, .compute = NULL) {
  require_daemons(.compute, call = environment())
  if (!is.function(.f)) stop(sprintf("`.f` must be of type function, not %s", typeof(.f)))
  call <- sys.call()
  profile <- .profile(.compute)
  if (.otel$on) .otel_map_span(profile)
  globals <- .task_globals(list(...), call)
  dx <- dim(.x)
  shared <- .map_shared(profile, globals, .args, if (is.null(dx)) length(.x) else dx[1L])
  globals <- shared$globals
  .args <- shared$args
  flags <- .flag_map
  if (length(shared$handles)) {
    flags <- bitwOr(flags, .flag_shared)
    on.exit(.Call(wrap__host_unshare, shared$handles))
  }
  if (is.null(dx)) {
    expr <- quote(do.call(.f, c(list(.x), .args), quote = TRUE))
    elements <- .x
    nms <- names(.x)
  } else if (is.data.frame(.x)) {
    expr <- quote(do.call(.f, c(.x, .args), quote = TRUE))
    elements <- lapply(seq_len(dx[1L]), function(i) lapply(.x, `[[`, i))
    rn <- attr(.x, "row.names", exact = TRUE)
    nms <- if (is.character(rn)) rn
  } else {
    expr <- quote(do.call(.f, c(as.list(.x), .args), quote = TRUE))
    elements <- lapply(seq_len(dx[1L]), function(i) .x[i, ])
    nms <- if (is.matrix(.x)) rownames(.x)
  }
  # one call submits every element, unless something is needed per element
  # on this side (a trace span, a seed's stream, room in a memory budget)
  out <- if (.otel$on || profile$sync || !is.null(profile$seed) || !is.null(profile$memory)) {
    lapply(elements, function(elem)
      .submit_to(profile, .payload(expr, globals, list(.f = .f, .x = elem, .args = .args)), -1,
                 flags = flags, shared = shared$handles))
  } else {
    template <- .payload(expr, globals, list(.f = .f, .x = NULL, .args = .args))
    .Call(wrap__host_submit_map, profile$host, template, as.list(elements), flags, shared$handles)
  }
  names(out) <- nms
  class(out) <- "mirai_map"
  if (length(.promise)) .map_promises(out, .promise)
  invisible(out)
}

# Objects in `...` or `.args` at least this large (bytes) are shared by a
# map's tasks rather than copied into each.
.shared_min <- 1e6

# The large objects of a map's `...` and `.args`, serialized once: each is
# replaced by a placeholder naming it, and goes to each daemon once, before
# the first of the map's tasks it runs (see src/rust/src/host/shared.rs).
# Vectors and lists only: an environment (or a function, which has one)
# would be one object shared by every task on a daemon, where each task
# used to get its own copy. Not for a single task or a synchronous profile.
.map_shared <- function(profile, globals, args, n) {
  out <- list(globals = globals, args = args, handles = NULL)
  if (n < 2L || profile$sync) return(out)
  large <- function(x) (is.atomic(x) || is.list(x)) && !is.environment(x) &&
    !is.function(x) && utils::object.size(x) >= .shared_min
  handles <- list()
  share <- function(objects) {
    for (i in seq_along(objects)) {
      if (!large(objects[[i]])) next
      s <- .Call(wrap__host_share, profile$host, objects[[i]])
      handles[[length(handles) + 1L]] <<- s[[1L]]
      objects[i] <- list(s[[2L]])
    }
    objects
  }
  out$globals <- share(globals)
  if (is.list(args)) out$args <- share(args)
  out$handles <- if (length(handles)) handles
  out
}

# Register `.promise` handlers on each element (see mirai_map()).
.map_promises <- function(x, handlers) {
  if (is.list(handlers)) {
    for (m in x) promises::then(m, handlers[[1L]], if (length(handlers) > 1L) handlers[[2L]])
  } else {
    for (m in x) promises::then(m, handlers)
  }
}

#' @export
print.mirai_map <- function(x, ...) {
  cat(sprintf("< mirai map [%d/%d] >\n", .Call(wrap__aio_count_resolved, x), length(x)),
      file = stdout())
  invisible(x)
}

#' @export
`[.mirai_map` <- function(x, ...) {
  if (!...length() || missing(..1)) return(collect_mirai(x))
  # the option symbols are looked up in the options table, not in the
  # caller's frame; anything else must evaluate to an option object
  envir <- parent.frame()
  options <- vapply(as.list(substitute(list(...)))[-1L], function(a) {
    if (is.symbol(a) && as.character(a) %in% names(.map_option_table)) return(as.character(a))
    value <- eval(a, envir)
    if (!inherits(value, "miraiMapOption"))
      stop("collection options are .flat, .progress and .stop, e.g. x[.stop, .progress]",
           call. = FALSE)
    unclass(value)
  }, character(1L))
  .collect_map(x, .map_options(options))
}

#' mirai Map Options
#'
#' Collection options for a 'mirai_map': `x[.flat]`, `x[.progress]`,
#' `x[.stop]`, combined as `x[.stop, .progress]`. See [mirai_map()].
#'
#' @format Objects naming a collection option.
#' @name map_options
#' @export
.flat <- structure(".flat", class = "miraiMapOption")

#' @rdname map_options
#' @export
.progress <- structure(".progress", class = "miraiMapOption")

#' @rdname map_options
#' @export
.stop <- structure(".stop", class = "miraiMapOption")

# What each option does, before the first element (`i` 0) and after each
# element is collected: see .collect_map().
.map_option_table <- new.env(parent = emptyenv())
.map_option_table$.flat <- "flat"
.map_option_table$.progress <- "progress"
.map_option_table$.stop <- "stop"

# The options selected by `options`: a character vector of option names,
# or a named vector or list whose names select (values ignored but that of
# `.progress`, the progress bar's name or cli arguments). Unknown names are
# mget()'s error.
.map_options <- function(options) {
  progress <- NULL
  if (length(names(options))) {
    progress <- options[[".progress"]]
    options <- names(options)
  }
  list(steps = unlist(mget(options, envir = .map_option_table), use.names = FALSE),
       progress = progress)
}

# Collect a map's values in index order, applying the options in the
# order given before the first element and after each.
.collect_map <- function(x, opts, envir = parent.frame(2L)) {
  for (m in x) if (!is_mirai(m)) stop(.messages$not_aio, call. = FALSE)
  n <- length(x)
  state <- new.env(parent = emptyenv())
  state$type <- NULL
  state$bar <- NULL
  step <- function(i, xi) for (s in opts$steps) switch(s,
    flat = .flat_step(x, i, xi, state),
    stop = if (i > 0L && is_error_value(xi)) .stop_map(x, i, xi),
    progress = .progress_step(i, n, opts$progress, envir, state)
  )
  step(0L, NULL)
  out <- vector("list", n)
  for (i in seq_len(n)) {
    if (!.Call(wrap__aio_wait, x[[i]])) {
      .interrupt()
    }
    xi <- .subset2(x[[i]], "data")
    step(i, xi)
    if (!is.null(xi)) out[[i]] <- xi
  }
  names(out) <- names(x)
  if ("flat" %in% opts$steps) return(unlist(out, recursive = FALSE))
  out
}

# .flat: every element an ordinary value of the first element's type.
.flat_step <- function(x, i, xi, state) {
  if (i == 0L) return()
  if (is_error_value(xi)) .stop_map(x, i, xi)
  type <- typeof(xi)
  if (is.null(state$type)) {
    state$type <- type
  } else if (type != state$type) {
    stop_mirai(x)
    if (!.state$cli)
      stop(sprintf("Cannot flatten outputs of differing type: %s / %s", state$type, type),
           call. = FALSE)
    first <- state$type
    cli::cli_abort(c(`!` = "cannot flatten outputs of differing type: {first} / {type}"),
                   location = i, name = names(x)[i], call = quote(mirai_map()))
  }
}

# .stop (and .flat on an error): cancel the whole map, then raise an
# error naming the element; with cli, an rlang error whose parent is the
# element's error.
.stop_map <- function(x, i, xi) {
  stop_mirai(x)
  msg <- if (is_mirai_error(xi)) attr(xi, "message") else if (is_mirai_interrupt(xi))
    "Interrupted" else .error_text(xi)
  if (!.state$cli) stop(sprintf("In index %d:\n%s", i, msg), call. = FALSE)
  name <- names(x)[i]
  parent <- if (is_mirai_error(xi)) `class<-`(attributes(xi), c("error", "condition")) else
    errorCondition(msg)
  bullets <- c(i = "In index: {i}.",
               i = if (length(name) && nzchar(name)) "With name: {name}.")
  cli::cli_abort(bullets, location = i, name = name, parent = parent,
                 call = quote(mirai_map()))
}

# .progress: a cli progress bar living in a child of the caller's frame,
# or without cli a text bar on stderr.
.progress_step <- function(i, n, spec, envir, state) {
  if (!.state$cli) {
    cat(sprintf("\r[ %d / %d %s", i, n, if (i < n) ".... ]" else "done ]\n"), file = stderr())
    return()
  }
  if (i == 0L) {
    state$bar <- new.env(parent = envir)
    if (is.list(spec)) {
      do.call(cli::cli_progress_bar,
              c(list(total = n, auto_terminate = TRUE, .envir = state$bar), spec))
    } else {
      cli::cli_progress_bar(name = spec, type = NULL, total = n, auto_terminate = TRUE,
                            .envir = state$bar)
    }
    return()
  }
  cli::cli_progress_update(.envir = state$bar)
}
