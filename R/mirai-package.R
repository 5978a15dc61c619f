#' mirai: Minimalist Async Evaluation Framework for R
#'
#' Evaluate R expressions asynchronously, in parallel, locally or across the
#' network. [mirai()] sends a task to a background process and returns at
#' once; [daemons()] sets up persistent background processes to run tasks;
#' [mirai_map()] maps a function over a vector in parallel. The sockets,
#' scheduling and serialization live in a Rust core.
#'
#' @useDynLib mirai, .registration = TRUE
#' @keywords internal
"_PACKAGE"

# Profiles (compute profiles) and package state live here.
.. <- new.env(hash = TRUE, parent = emptyenv())
.state <- new.env(parent = emptyenv())
.state$default_profile <- "default"
.state$on_daemon <- FALSE
.state$url_counter <- 0L

.messages <- list(
  missing_expression = "missing expression, perhaps wrap in {}?",
  named_dots = "all `...` arguments must be named, unless supplying an environment",
  named_args = "all items in `.args` must be named, unless supplying an environment",
  n_zero = "the number of daemons must be zero or greater",
  numeric_n = "`n` must be numeric, did you mean to provide `url`?",
  requires_daemons = "daemons must be set to use this function",
  sync_launch = "daemons cannot be launched for synchronous compute profiles",
  within_map = "cannot create local daemons from within mirai map"
)

`%||%` <- function(x, y) if (is.null(x)) y else x

# The profile name a call refers to.
.profile_name <- function(.compute) {
  if (is.null(.compute)) return(.state$default_profile)
  if (!is.character(.compute) || length(.compute) != 1L || is.na(.compute))
    stop("`.compute` must be a single character string naming a compute profile", call. = FALSE)
  .compute
}

.profile <- function(.compute) ..[[.profile_name(.compute)]]

# Re-raise an interrupt that Rust noticed while waiting (Ctrl-C): handlers
# for "interrupt" conditions run, then control returns to the top level.
.interrupt <- function() {
  signalCondition(structure(list(message = "", call = NULL), class = c("interrupt", "condition")))
  invokeRestart("abort")
}

# The active binding behind each pending mirai's `m$data`: it passes its
# own frame (enclosed by the mirai) to the Rust core. The functions are
# inlined in its body, so inside a mirai (an environment with no parent)
# it needs no search path; each mirai gets a copy enclosed by itself.
.onLoad <- function(libname, pkgname) {
  f <- function() NULL
  body(f) <- as.call(list(.Call, wrap__mirai_data, as.call(list(environment))))
  environment(f) <- emptyenv()
  .Call(wrap__init_mirai_template, f)
}
