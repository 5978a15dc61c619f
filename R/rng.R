# Random number streams. Each profile keeps an L'Ecuyer-CMRG stream state;
# every daemon launched (seed = NULL) or every mirai (integer seed) takes the
# next stream from it, so parallel streams never overlap.

# The first stream of a profile, from `seed` or, when NULL, from the clock
# and process id. The session's own RNG state is left untouched.
.initial_stream <- function(seed) {
  had <- exists(".Random.seed", envir = .GlobalEnv, inherits = FALSE)
  if (had) old <- get(".Random.seed", envir = .GlobalEnv, inherits = FALSE)
  kinds <- RNGkind()
  on.exit({
    if (had) {
      assign(".Random.seed", old, envir = .GlobalEnv)
    } else {
      RNGkind(kinds[1L], kinds[2L], kinds[3L])
      rm(".Random.seed", envir = .GlobalEnv)
    }
  })
  if (is.null(seed)) {
    seed <- bitwXor(as.integer((as.numeric(Sys.time()) * 1000) %% .Machine$integer.max),
                    Sys.getpid())
  }
  RNGkind("L'Ecuyer-CMRG")
  set.seed(seed)
  get(".Random.seed", envir = .GlobalEnv, inherits = FALSE)
}

# Advance a profile's stream and return the new one.
.next_stream <- function(profile) {
  profile$stream <- parallel::nextRNGStream(profile$stream)
  profile$stream
}

# The initial stream of a daemon being launched: the next stream of the
# profile, unless every mirai gets its own (integer seed), in which case
# launching daemons must not advance the profile's stream, or the mirai's
# streams would depend on how many daemons were launched.
.daemon_stream <- function(profile) if (!profile$per_task_seed) .next_stream(profile)
