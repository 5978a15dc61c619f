# Runs the testthat suite against the installed mirai package and writes
# "<passed> <failed> <skipped>" (counted per test) to the file given as the
# first argument. Used by .ci/run.
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[[1L]] else stop("usage: run-tests.R <counts-file>")

# Don't let the progress reporter give up after 10 failures.
options(testthat.progress.max_fails = Inf)

files <- list.files("tests/testthat", pattern = "^test.*\\.[rR]$")
if (!length(files)) {
  message("No test files in tests/testthat")
  writeLines("0 0 0", out)
  quit(status = 0L)
}

res <- testthat::test_dir(
  "tests/testthat",
  package = "mirai",
  load_package = "installed",
  reporter = testthat::ProgressReporter$new(show_praise = FALSE),
  stop_on_failure = FALSE
)
df <- as.data.frame(res)

# A test counts as failed if any expectation failed or it errored, as
# skipped if it was skipped (empty tests are reported as skips), else passed.
is_failed <- df$failed > 0 | df$error
is_skipped <- !is_failed & df$skipped
passed <- sum(!is_failed & !is_skipped)
failed <- sum(is_failed)
skipped <- sum(is_skipped)

cat(sprintf("R tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped))
writeLines(paste(passed, failed, skipped), out)
