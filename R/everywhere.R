#' Evaluate Everywhere
#'
#' Evaluates an expression on all daemons of a compute profile, keeping the
#' state it creates there (loaded packages, global variables, options)
#' whatever the daemons' `cleanup` setting. Returns at once: it never waits
#' for daemons to connect.
#'
#' With dispatcher, the tasks go to `max(.min, connections)` distinct
#' daemons, and tasks submitted afterwards start only once each of those
#' has been taken (a synchronisation point). Daemons that connect later
#' (or were busy, and did not take one) also evaluate the expression,
#' before their first other task; those extra evaluations are not counted
#' by [status()]. Without dispatcher, one task is sent to each connected
#' daemon (at least as many as the local daemons launched), best effort.
#'
#' `everywhere()` never takes a random-number stream: the streams of later
#' tasks are the same whether or not it was called.
#'
#' @inheritParams mirai
#' @param .min (dispatcher) the minimum number of daemons to evaluate the
#'   expression as a group (later tasks wait until that many have each
#'   taken it). It does not make `everywhere()` wait.
#' @return Invisibly, a 'mirai_map' of the group's tasks.
#' @examples
#' \donttest{
#' daemons(2)
#' everywhere(library(stats), x = 1)
#' mirai(x)[]
#' daemons(0)
#' }
#' @export
everywhere <- function(.expr, ..., .args = list(), .min = 1L, .compute = NULL) {
  require_daemons(.compute, call = environment())
  if (missing(.expr)) stop(.messages$missing_expression)
  profile <- .profile(.compute)
  payload <- .task(substitute(.expr), list(...), .args, sys.call(), parent.frame(), environment())
  if (.otel$on) {
    # one mirai span for the call: its tasks share one payload
    span <- .otel_mirai_span(profile)
    payload[["._otel_."]] <- .otel_context(span)
    on.exit(.otel_mirai_end(span, returnValue()))
  }
  if (profile$sync)
    return(invisible(structure(list(.sync_mirai(profile, payload, .flag_keep_state)),
                               class = "mirai_map")))
  k <- if (is.null(profile$dispatcher)) {
    max(status(profile$compute)$connections, profile$n)
  } else {
    max(as.integer(.min), info(profile$compute)[["connections"]])
  }
  ms <- .Call(wrap__host_everywhere, profile$host, payload, as.integer(k))
  invisible(structure(ms, class = "mirai_map"))
}
