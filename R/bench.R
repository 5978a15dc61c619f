# Benchmark reference (tools/bench, scenario bigvec): seconds of each of
# `reps` round trips of `bytes` bytes echoed through a Unix socketpair by
# a thread of this process. Internal, not exported.
socketpair_echo <- function(bytes, reps = 1L) {
  .Call(wrap__socketpair_echo, as.double(bytes), as.integer(reps))
}
