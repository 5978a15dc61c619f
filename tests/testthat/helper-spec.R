# Helpers for the SPEC.md conformance suite (test-spec-*.R).
#
# These tests are written against the binding contract in SPEC.md and are
# validated against the established (upstream) package as well. Tests of
# our own extensions ([EXT]), and of points where upstream 2.7.3 differs
# from the contract, are guarded with skip_if_upstream().

# Upstream mirai is built on nanonext, which is loaded with it; this package
# does not use nanonext.
is_upstream <- function() isNamespaceLoaded("nanonext")

# Set SPEC_UNGUARDED=1 to run the guarded tests against upstream anyway
# (to see how upstream differs).
skip_if_upstream <- function(why = "not upstream behaviour") {
  if (is_upstream() && !nzchar(Sys.getenv("SPEC_UNGUARDED")))
    testthat::skip(paste("upstream:", why))
  invisible(TRUE)
}

# Run `expr` at the exit of `frame` (a withr-free defer).
spec_defer <- function(expr, frame = parent.frame()) {
  thunk <- as.call(list(function() expr))
  do.call(on.exit, list(thunk, add = TRUE, after = FALSE), envir = frame)
  invisible()
}

# Set daemons for a profile and reset that profile when the calling test
# (or function) exits, whatever happens. Returns daemons()' value.
spec_daemons <- function(..., .compute = "default", .frame = parent.frame()) {
  spec_defer(try(daemons(0, .compute = .compute), silent = TRUE), frame = .frame)
  daemons(..., .compute = .compute)
}

# The condition signalled by `expr` (an error), or NULL.
catch_cnd <- function(expr) tryCatch({ expr; NULL }, error = function(e) e)

# N^k(s): k-fold parallel::nextRNGStream().
nrs <- function(s, k = 1L) {
  for (i in seq_len(k)) s <- parallel::nextRNGStream(s)
  s
}

# Evaluate `expr` with the session RNG state saved and restored afterwards
# (kind included), so tests computing expected streams leave no trace.
with_rng_preserved <- function(expr) {
  had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  old <- if (had) get(".Random.seed", envir = globalenv())
  kinds <- RNGkind()
  on.exit({
    RNGkind(kinds[1L], kinds[2L], kinds[3L])
    if (had) assign(".Random.seed", old, envir = globalenv())
    else if (exists(".Random.seed", envir = globalenv(), inherits = FALSE))
      rm(".Random.seed", envir = globalenv())
  })
  expr
}

# S0 for an integer seed: set.seed(seed, kind = "L'Ecuyer-CMRG") (3.5).
s0_seeded <- function(seed) with_rng_preserved({
  set.seed(seed, kind = "L'Ecuyer-CMRG")
  get(".Random.seed", envir = globalenv())
})

# The S0 that a daemons(seed = NULL) call made now would compute, following
# the steps of SPEC 3.5 from the current host RNG state, without changing
# that state.
s0_predicted <- function() with_rng_preserved({
  stats::rexp(1)
  RNGkind("L'Ecuyer-CMRG")
  get(".Random.seed", envir = globalenv())
})

# The rs=c(...) integers of a non-dispatcher launch command.
cmd_rs <- function(cmd) {
  inner <- sub("^.*,rs=c\\(([-0-9,]*)\\)\\).*$", "\\1", cmd)
  if (!nzchar(inner)) return(integer())
  as.integer(strsplit(inner, ",", fixed = TRUE)[[1L]])
}

# A library directory in which `cli` is present but broken (only its
# DESCRIPTION), so that requireNamespace("cli") fails in an R process that
# puts it first on its library path.
broken_cli_lib <- local({
  lib <- NULL
  function() {
    if (is.null(lib) || !dir.exists(lib)) {
      lib <<- tempfile("nocli-lib")
      dir.create(file.path(lib, "cli"), recursive = TRUE)
      desc <- system.file("DESCRIPTION", package = "cli")
      if (nzchar(desc)) file.copy(desc, file.path(lib, "cli", "DESCRIPTION"))
      else writeLines(c("Package: cli", "Version: 99.0.0"), file.path(lib, "cli", "DESCRIPTION"))
    }
    lib
  }
})

# Run R code `code` (a character vector of lines) in a fresh Rscript in
# which cli cannot be loaded, with mirai attached. The code must assign its
# result to `result`. Returns list(result, stdout, stderr, status).
run_nocli <- function(code, timeout = 120) {
  script <- tempfile(fileext = ".R")
  out <- tempfile(fileext = ".rds")
  so <- tempfile()
  se <- tempfile()
  on.exit(unlink(c(script, out, so, se)))
  writeLines(c(
    "stopifnot(!requireNamespace('cli', quietly = TRUE))",
    "suppressPackageStartupMessages(library(mirai))",
    "result <- NULL",
    code,
    sprintf("saveRDS(result, %s)", deparse(out))
  ), script)
  libs <- paste(c(broken_cli_lib(), .libPaths()), collapse = .Platform$path.sep)
  env <- c(sprintf("R_LIBS=%s", libs), "R_LIBS_USER=NULL", "R_PROFILE_USER=NULL")
  status <- system2(rscript(), c("--vanilla", shQuote(script)), stdout = so, stderr = se,
                    env = env, timeout = timeout)
  list(
    result = if (file.exists(out)) readRDS(out),
    stdout = if (file.exists(so)) readLines(so, warn = FALSE) else character(),
    stderr = if (file.exists(se)) readChar(se, file.size(se), useBytes = TRUE) else "",
    status = status
  )
}

# The command line of a process (Linux).
proc_cmdline <- function(pid) {
  f <- sprintf("/proc/%d/cmdline", as.integer(pid))
  if (!file.exists(f)) return(NA_character_)
  raw <- readBin(f, "raw", 65536L)
  raw[raw == as.raw(0)] <- as.raw(32)
  trimws(rawToChar(raw))
}

# The pids of this machine's processes whose command line contains `text`.
processes_showing <- function(text) {
  pids <- as.integer(basename(Sys.glob("/proc/[0-9]*")))
  lines <- vapply(pids, function(p) tryCatch(proc_cmdline(p), error = function(e) NA_character_), "")
  pids[!is.na(lines) & grepl(text, lines, fixed = TRUE)]
}

# A file-based gate that a task can wait on: the task polls (bounded) for
# the file; the test opens the gate by creating it.
new_gate <- function() tempfile("gate")
open_gate <- function(gate) invisible(file.create(gate))
# A function (enclosed by the global environment, so it travels light) that
# waits for the gate to open, at most `secs` seconds, and returns whether it
# opened, or `value` when given.
gate_fun <- function(gate, secs = 30) {
  f <- eval(bquote(function(value = NULL) {
    deadline <- Sys.time() + .(secs)
    while (!file.exists(.(gate)) && Sys.time() < deadline) Sys.sleep(0.02)
    if (is.null(value)) file.exists(.(gate)) else value
  }))
  environment(f) <- globalenv()
  f
}

# Give a function the global environment as its enclosure (so that sending
# it to a daemon does not serialize the test's environment).
gf <- function(f) {
  environment(f) <- globalenv()
  f
}

# Whether IPv6 loopback is configured on this machine.
has_ipv6_loopback <- function() {
  f <- "/proc/net/if_inet6"
  file.exists(f) && any(grepl("^0{31}1 ", readLines(f, warn = FALSE)))
}

# A small shell script that records its arguments (one per line) into a
# file and, with `stdin = TRUE`, its standard input into another; used as a
# remote launch `command`. The files appear complete (written, then moved).
recorder_script <- function(stdin = FALSE, name = "record.sh") {
  dir <- tempfile("recorder")
  dir.create(dir)
  path <- file.path(dir, name)
  writeLines(c(
    "#!/bin/sh",
    if (stdin) sprintf("cat > '%s/stdin.tmp'; mv '%s/stdin.tmp' '%s/stdin.txt'", dir, dir, dir),
    sprintf("printf '%%s' \"$MIRAI_SECRET\" > '%s/secret.txt'", dir),
    sprintf("printf '%%s\\n' \"$@\" > '%s/args.tmp'", dir),
    sprintf("mv '%s/args.tmp' '%s/args.txt'", dir, dir)
  ), path)
  Sys.chmod(path, "0755")
  list(path = path, args = file.path(dir, "args.txt"), stdin = file.path(dir, "stdin.txt"),
       secret = file.path(dir, "secret.txt"))
}

# Keep cli from wrapping condition messages at the console width until
# `frame` exits.
spec_wide_cli <- function(frame = parent.frame()) {
  # (testthat 3e turns cli's unicode off inside tests: the messages here
  # are compared with the bullets users see)
  op <- options(cli.width = 10000L, cli.unicode = TRUE)
  spec_defer(options(op), frame = frame)
}

# Reset these profiles when the calling test exits (for tests that call
# daemons() directly, e.g. expecting an error that a faulty build might not
# raise, so that a failure never leaks daemons into later tests).
spec_reset_on_exit <- function(profiles = "default", frame = parent.frame()) {
  spec_defer(for (p in profiles) try(daemons(0, .compute = p), silent = TRUE), frame = frame)
}

# A launch command without the host's secret in front ([EXT] SPEC 4.2: the
# commands launch_remote() prints carry it as MIRAI_SECRET=...).
strip_secret <- function(x) sub("^MIRAI_SECRET=[^ ]+ ", "", x)

# The secret of the current profile's host.
host_secret <- function() attr(mirai:::.profile(NULL)$host, "secret")

# Clusters and custom serialization (SPEC 5.2, 5.3) arrive with the
# ecosystem work: tests of them skip until this build has them.
skip_without_ecosystem <- function()
  if (!all(vapply(c("make_cluster", "serial_config"), exists, logical(1L),
                  envir = asNamespace("mirai"), inherits = FALSE)))
    skip("clusters and serial_config() are not in this build yet")
