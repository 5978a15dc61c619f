#' mirai: Minimalist Async Evaluation Framework for R
#'
#' Evaluate R expressions asynchronously, in parallel, locally or across the
#' network. [mirai()] sends a task to a background process and returns at
#' once; [daemons()] sets up persistent background processes to run tasks;
#' [mirai_map()] maps a function over a vector in parallel. The sockets,
#' scheduling and serialization live in a Rust core.
#'
#' @useDynLib mirai, .registration = TRUE
#' @docType package
#' @name mirai-package
#' @keywords internal
NULL

# Compute profiles, by name; and package state.
.. <- new.env(hash = TRUE, parent = emptyenv())
.state <- new.env(parent = emptyenv())
.state$default_profile <- "default"
.state$on_daemon <- FALSE
.state$within_map <- FALSE
.state$cli <- FALSE
.state$profile_names <- character()

.messages <- list(
  missing_expression = "missing expression, perhaps wrap in {}?",
  named_dots = "all `...` arguments must be named, unless supplying an environment",
  named_args = "all items in `.args` must be named, unless supplying an environment",
  n_zero = "the number of daemons must be zero or greater",
  numeric_n = "`n` must be numeric, did you mean to provide `url`?",
  requires_daemons = "daemons must be set to use this function",
  sync_launch = "daemons cannot be launched for synchronous compute profiles",
  within_map = "cannot create local daemons from within mirai map",
  not_aio = "object is not an Aio or list of Aios",
  cluster_inactive = "cluster is no longer active",
  sync_message = "mirai: initial sync with daemon(s) [%d secs elapsed]"
)

`%||%` <- function(x, y) if (is.null(x)) y else x

# An error whose call is `call` (by default the call of the function that
# raised it, as stop() inside that function would give).
.abort <- function(message, call = sys.call(-1L)) stop(simpleError(message, call))

# The profile name a `.compute` argument refers to.
.profile_name <- function(.compute) {
  if (is.null(.compute)) return(.state$default_profile)
  if (inherits(.compute, "miraiCluster")) return(attr(.compute, "id"))
  if (!is.character(.compute) || length(.compute) != 1L || is.na(.compute))
    .abort("`.compute` must be a character string naming a compute profile", call = NULL)
  .compute
}

.profile <- function(.compute) ..[[.profile_name(.compute)]]

# Re-raise an interrupt that Rust noticed while waiting (Ctrl-C): handlers
# for "interrupt" conditions run, then control returns to the top level.
.interrupt <- function() {
  signalCondition(structure(list(message = "", call = NULL), class = c("interrupt", "condition")))
  invokeRestart("abort")
}

.onLoad <- function(libname, pkgname) {
  .state$cli <- requireNamespace("cli", quietly = TRUE)
  .otel_init()
  # Each mirai's `data` is an active binding made by evaluating this
  # `function() ...` in the mirai itself, whose parent is the empty
  # environment: so every function the body calls is inlined, and the
  # mirai is the enclosure of the binding's own frame.
  body <- as.call(list(.Call, wrap__mirai_data,
                       as.call(list(parent.env, as.call(list(environment))))))
  binding <- as.call(list(`function`, NULL, body))
  .Call(wrap__init_mirai, binding, .unserialize_error)
}

# A miraiError for a result the host could not rebuild.
.unserialize_error <- function(message) .mirai_error(simpleError(message), list())
