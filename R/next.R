# Random-number streams (SPEC: "the exact stream contract") and the
# nextget family. Each profile keeps a stream cursor C: L'Ecuyer-CMRG
# streams, each 2^127 steps after the last, so parallel streams never
# overlap. Daemons launched without dispatcher take C in turn; with a
# dispatcher, the core gives each daemon that connects the stream after
# the last one's; with an integer `seed`, every task takes C instead.

# The first stream S0 of a profile being set. The host's generator is
# used exactly as the established package uses it: one exponential draw,
# then the new generator is seeded from it (or from `seed`); the host's
# own state is then restored to what it was after the draw.
.initial_stream <- function(seed) {
  stats::rexp(1L)
  saved <- get(".Random.seed", envir = .GlobalEnv)
  on.exit(assign(".Random.seed", saved, envir = .GlobalEnv))
  RNGkind("L'Ecuyer-CMRG")
  if (!is.null(seed)) set.seed(seed)
  get(".Random.seed", envir = .GlobalEnv)
}

# Return the profile's cursor and advance it.
.next_stream <- function(profile) {
  stream <- profile$stream
  profile$stream <- parallel::nextRNGStream(stream)
  stream
}

#' Next >> Developer Interface
#'
#' `nextstream()` returns the next L'Ecuyer-CMRG random number stream of a
#' compute profile (and advances it), for developers launching daemons
#' themselves (the `rs` argument of [daemon()]). `nextget()` returns one of
#' a profile's settings: `"n"` (the number of local daemons, 1 for a URL or
#' synchronous profile), `"url"` (the URL daemons dial, with any port 0
#' replaced by the port assigned), `"dispatcher"` (non-`NULL` when a
#' dispatcher is used), `"tls"` (the certificate daemons are given),
#' `"stream"`, `"seed"`, `"sync"`, `"compute"` or `"dots"` (the daemon
#' settings, as passed on daemons' command lines). `nextcode()` describes
#' a [daemon()] exit code.
#'
#' @param x character name of a setting.
#' @param .compute character compute profile name. Unlike elsewhere, this
#'   defaults to "default" whatever the current profile.
#' @return `nextstream()`: an integer vector of length 7 (or `NULL` if no
#'   daemons are set). `nextget()`: the setting, or `NULL` if it is not set
#'   or no daemons are set.
#' @examples
#' \donttest{
#' daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
#' nextget("url")
#' nextstream()
#' daemons(0)
#' }
#' @export
nextstream <- function(.compute = "default") {
  profile <- .profile(.compute)
  if (is.null(profile)) return(NULL)
  .next_stream(profile)
}

#' @rdname nextstream
#' @export
nextget <- function(x, .compute = "default") {
  profile <- .profile(.compute)
  if (is.null(profile) || !is.character(x) || length(x) != 1L || is.na(x)) return(NULL)
  if (!x %in% c("n", "url", "dispatcher", "tls", "stream", "seed", "sync", "compute", "dots"))
    return(NULL)
  get0(x, envir = profile, inherits = FALSE)
}

#' @rdname nextstream
#' @param xc integer exit code returned by [daemon()].
#' @return `nextcode()`: a description `"<code> | Daemon <reason>"`:
#'   0 connection terminated, 1 idletime limit reached, 2 walltime limit
#'   reached, 3 task limit reached; `character(0)` for other codes.
#' @export
nextcode <- function(xc) {
  reason <- switch(as.character(as.integer(xc)[1L]),
                   `0` = "connection terminated",
                   `1` = "idletime limit reached",
                   `2` = "walltime limit reached",
                   `3` = "task limit reached")
  if (is.null(reason)) return(character(0L))
  sprintf("%d | Daemon %s", as.integer(xc), reason)
}
