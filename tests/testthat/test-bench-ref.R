# The bench's socketpair reference (tools/bench, scenario bigvec).

test_that("socketpair_echo echoes and times each repetition", {
  t <- mirai:::socketpair_echo(1e6, 3L)
  expect_length(t, 3L)
  expect_true(all(is.finite(t) & t > 0))
})

test_that("socketpair_echo refuses a negative size or no repetitions", {
  expect_error(mirai:::socketpair_echo(-1, 1L), "'bytes' must be")
  expect_error(mirai:::socketpair_echo(1e3, 0L), "'reps' must be")
})
