# SPEC 0, 3.1, 3.2: daemons() branches, return values, settings
# passthrough, reset semantics, profiles and the scoping helpers;
# Deviations 4, 13, 15, 24.

test_that("daemons() argument errors", {
  spec_reset_on_exit("default")
  e <- catch_cnd(daemons())
  expect_false(is.null(e))
  expect_match(conditionMessage(e), "argument \"n\" is missing, with no default", fixed = TRUE)
  e <- catch_cnd(daemons("2"))
  expect_identical(conditionMessage(e), "`n` must be numeric, did you mean to provide `url`?")
  e <- catch_cnd(daemons(-1))
  expect_identical(conditionMessage(e), "the number of daemons must be zero or greater")
  e <- catch_cnd(daemons(url = 1))
  expect_identical(conditionMessage(e), "`url` must be of type character, not double")
  e <- catch_cnd(daemons(url = TRUE))
  expect_identical(conditionMessage(e), "`url` must be of type character, not logical")
  expect_false(daemons_set())
})

test_that("daemons(0) and daemons(NULL) on an unset profile return a plain FALSE invisibly", {
  expect_invisible(daemons(0))
  expect_identical(daemons(0), FALSE)
  expect_identical(daemons(NULL, .compute = "spec-unset"), FALSE)
  expect_identical(daemons(0.7), FALSE)
})

test_that("daemons(n) returns the miraiDaemons TRUE invisibly, after all n connected", {
  expect_invisible(d <- spec_daemons(2))
  expect_identical(class(d), c("miraiDaemons", "default"))
  expect_identical(unclass(d), TRUE)
  expect_identical(capture.output(print(d)), "[1] TRUE")
  out <- NULL
  capture.output(out <- withVisible(print(d)))
  expect_identical(out$value, TRUE)
  expect_identical(status()$connections, 2L)
  expect_true(daemons_set())
  expect_identical(nextget("n"), 2L)
  # n is truncated to integer
  d <- spec_daemons(1.9, dispatcher = FALSE, .compute = "spec-trunc")
  expect_identical(class(d), c("miraiDaemons", "spec-trunc"))
  expect_identical(status(.compute = "spec-trunc")$connections, 1L)
  expect_identical(nextget("n", .compute = "spec-trunc"), 1L)
  expect_identical(daemons(0, .compute = "spec-trunc"), FALSE)
  expect_false(daemons_set(.compute = "spec-trunc"))
})

test_that("the dispatcher wait is silent", {
  expect_silent(spec_daemons(1))
  expect_silent(daemons(0))
})

test_that("without dispatcher a slow start reports the initial sync every 10 s", {
  # daemons are slowed at start-up by a user profile (they are R processes)
  local_r_profile("Sys.sleep(11)")
  msgs <- character()
  withCallingHandlers(
    spec_daemons(1, dispatcher = FALSE),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  expect_identical(msgs, "mirai: initial sync with daemon(s) [10 secs elapsed]\n")
  expect_identical(status()$connections, 1L)
})

test_that("daemons(n) after daemons(n) resets first: pending tasks give 19", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(1, dispatcher = disp)
    pid1 <- mirai(Sys.getpid())[]
    m <- mirai(Sys.sleep(10))
    daemons(1, dispatcher = disp)
    expect_identical(unclass(m$data), 19L)
    expect_identical(status()$connections, 1L)
    pid2 <- mirai(Sys.getpid())[]
    expect_false(identical(pid1, pid2))
    expect_true(wait_for(function() !pid_alive(pid1)))
    daemons(0)
  }
})

reset_check <- function(disp) {
  spec_daemons(2, dispatcher = disp)
  pids <- unlist(everywhere(Sys.getpid())[])
  expect_length(unique(pids), 2L)
  ms <- lapply(1:4, function(i) mirai(Sys.sleep(30)))
  expect_identical(daemons(0), FALSE)
  expect_identical(vapply(ms, function(m) unclass(m$data), integer(1)), rep(19L, 4L))
  expect_false(daemons_set())
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  # daemons with the default autoexit exit at once, busy or not
  for (p in pids) expect_true(wait_for(function() !pid_alive(p), timeout = 10))
  for (p in pids) if (pid_alive(p)) tools::pskill(p)
  # later mirai() calls use ephemeral daemons
  expect_true(mirai(mirai::on_daemon())[])
}

test_that("reset: every unresolved mirai is 19 when daemons(0) returns; daemons exit (dispatcher)", {
  reset_check(TRUE)
})

test_that("reset: every unresolved mirai is 19 when daemons(0) returns; daemons exit (no dispatcher)", {
  skip_if_upstream("a non-dispatcher daemon holding a further task exits only after its current task ends")
  reset_check(FALSE)
})

test_that("reset without dispatcher: pending tasks are 19 at once", {
  spec_daemons(1, dispatcher = FALSE)
  pid <- mirai(Sys.getpid())[]
  m <- mirai(Sys.sleep(30))
  daemons(0)
  expect_identical(unclass(m$data), 19L)
  expect_true(wait_for(function() !pid_alive(pid), timeout = 10))
})

test_that("url branch: no local daemons are launched, even with n; returns at once", {
  d <- spec_daemons(n = 2, url = "tcp://127.0.0.1:0")
  expect_identical(class(d), c("miraiDaemons", "default"))
  expect_true(daemons_set())
  expect_identical(status()$connections, 0L)
  expect_identical(nextget("n"), 1L)
  expect_false(wait_for(function() status()$connections > 0L, timeout = 1.5))
  daemons(0)
  # only url[1] is used
  spec_daemons(url = c("tcp://127.0.0.1:0", "not a url"), dispatcher = FALSE)
  expect_match(status()$daemons, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  daemons(0)
  # as the README shows it: host_url()'s named vector, one URL per
  # interface (the first is used, its name dropped)
  hu <- host_url(port = 0)
  spec_daemons(url = hu)
  url <- nextget("url")
  expect_null(names(url))
  expect_identical(sub(":[0-9]+$", "", url), sub(":0$", "", unname(hu[[1L]])))
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("host_url")[], "host_url")
})

test_that("remote is ignored without url", {
  spec_daemons(1, remote = remote_config(command = "spec-no-such-command-xyz"))
  expect_identical(status()$connections, 1L)
})

test_that("url with remote launches through launch_remote(); its error resets the profile", {
  spec_reset_on_exit("default")
  rem <- remote_config(command = "sh", args = c("-c", "."), rscript = rscript(), quote = TRUE)
  spec_daemons(1, url = "tcp://127.0.0.1:0", remote = rem)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("remote")[], "remote")
  daemons(0)
  bad <- remote_config(command = "sh", args = list(c("-c", "."), c("-c", "."), c("-c", ".")), rscript = rscript(), quote = TRUE)
  e <- catch_cnd(daemons(2, url = "tcp://127.0.0.1:0", remote = bad))
  expect_identical(conditionMessage(e), "`n` must equal the length of `args`, or either must be 1")
  expect_false(daemons_set())
})

test_that("a URL that cannot be used errors with the transport message; profile not set", {
  spec_reset_on_exit(c("default", "spec-clash"))
  e <- catch_cnd(daemons(url = "nonsense://x"))
  expect_identical(conditionMessage(e), "9 | Not supported")
  expect_false(daemons_set())
  e <- catch_cnd(daemons(url = "tcp://bad host:1", dispatcher = FALSE))
  expect_identical(conditionMessage(e), "15 | Address invalid")
  expect_false(daemons_set())
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, .compute = "spec-used")
  used <- status(.compute = "spec-used")$daemons
  for (disp in c(TRUE, FALSE)) {
    e <- catch_cnd(daemons(url = used, dispatcher = disp, .compute = "spec-clash"))
    expect_identical(conditionMessage(e), "10 | Address in use")
    expect_false(daemons_set(.compute = "spec-clash"))
  }
  # the other profile is untouched
  expect_true(daemons_set(.compute = "spec-used"))
})

test_that("`...` settings: only logical/numeric kept, unknown names and duplicates passed, tlscert extracted", {
  spec_daemons(
    url = "tcp://127.0.0.1:0", dispatcher = FALSE, seed = 1L,
    cleanup = FALSE, notused = "x", output = TRUE, idletime = 10000, walltime = 1e5,
    fn = identity, autoexit = NA, maxtasks = Inf, timerstart = 0L, nul = NULL,
    tlscert = "/tmp/spec-cert.pem", cleanup = TRUE
  )
  dots <- ",cleanup=FALSE,output=TRUE,idletime=10000,walltime=1e+05,autoexit=NA,maxtasks=Inf,timerstart=0,cleanup=TRUE"
  expect_identical(nextget("dots"), dots)
  expect_identical(nextget("tls"), "/tmp/spec-cert.pem")
  url <- nextget("url")
  cmd <- launch_remote(1)
  expect_identical(
    unclass(cmd),
    sprintf("Rscript -e 'mirai::daemon(\"%s\",dispatcher=FALSE%s,tlscert=\"/tmp/spec-cert.pem\",rs=c())'", url, dots)
  )
  daemons(0)
  spec_daemons(url = "tcp://127.0.0.1:0")
  expect_identical(nextget("dots"), "")
  expect_null(nextget("tls"))
})

test_that("unknown and non-numeric settings are accepted by local daemons", {
  spec_daemons(1, notused = "x", timerstart = 0)
  expect_identical(status()$connections, 1L)
  expect_identical(mirai("ok")[], "ok")
})

test_that("dispatcher must be TRUE or FALSE", {
  spec_reset_on_exit("default")
  expect_error(daemons(1, dispatcher = "yes"))
  expect_false(daemons_set())
})

test_that("compute profiles are independent", {
  spec_daemons(1, .compute = "spec-p1")
  spec_daemons(1, dispatcher = FALSE, .compute = "spec-p2")
  p1 <- mirai(Sys.getpid(), .compute = "spec-p1")[]
  p2 <- mirai(Sys.getpid(), .compute = "spec-p2")[]
  expect_false(identical(p1, p2))
  m2 <- mirai(Sys.sleep(10), .compute = "spec-p2")
  daemons(0, .compute = "spec-p1")
  expect_false(daemons_set(.compute = "spec-p1"))
  expect_true(daemons_set(.compute = "spec-p2"))
  expect_true(unresolved(m2))
  expect_false(daemons_set())
  expect_identical(status(.compute = "spec-p2")$connections, 1L)
  stop_mirai(m2)
})

test_that("a profile is set by sync and url-only calls too", {
  spec_daemons(sync = TRUE, .compute = "spec-set-sync")
  expect_true(daemons_set(.compute = "spec-set-sync"))
  spec_daemons(url = local_url(), .compute = "spec-set-url")
  expect_true(daemons_set(.compute = "spec-set-url"))
  expect_false(daemons_set(.compute = "spec-set-none"))
})

test_that("with(daemons(...), expr) scopes the profile, returns the value, resets on exit", {
  spec_daemons(1, dispatcher = FALSE)
  default_url <- status()$daemons
  spec_defer(daemons(0, .compute = "spec-with"))
  res <- withVisible(with(daemons(1, .compute = "spec-with"), {
    list(cur = status()$daemons, set = daemons_set(), n = status()$connections,
         on = mirai(Sys.getpid())[])
  }))
  expect_true(res$visible)
  expect_false(identical(res$value$cur, default_url))
  expect_identical(res$value$n, 1L)
  expect_false(daemons_set(.compute = "spec-with"))
  # the previous current profile is restored and untouched
  expect_identical(status()$daemons, default_url)
  expect_true(daemons_set())
  # also on error
  expect_error(with(daemons(1, .compute = "spec-with"), stop("inside")), "inside")
  expect_false(daemons_set(.compute = "spec-with"))
  expect_identical(status()$daemons, default_url)
})

test_that("with_daemons() and local_daemons() switch the current profile", {
  spec_daemons(url = local_url(), .compute = "spec-scope")
  url <- status(.compute = "spec-scope")$daemons
  r <- withVisible(with_daemons("spec-scope", status()$daemons))
  expect_true(r$visible)
  expect_identical(r$value, url)
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  # nextget() follows the literal "default", not the current profile
  expect_null(with_daemons("spec-scope", nextget("url")))
  expect_identical(with_daemons("spec-scope", nextget("url", .compute = "spec-scope")), url)
  f <- function() {
    expect_null(local_daemons("spec-scope"))
    expect_invisible(local_daemons("spec-scope"))
    status()$daemons
  }
  expect_identical(f(), url)
  expect_identical(status(), list(connections = 0L, daemons = 0L))
  # they neither create nor reset daemons
  expect_true(daemons_set(.compute = "spec-scope"))
})

test_that("require_daemons() and its callers (cli form)", {
  skip_if_not_installed("cli")
  spec_wide_cli()
  expect_false(daemons_set())
  e <- catch_cnd(require_daemons())
  expect_s3_class(e, "rlang_error")
  expect_identical(conditionMessage(e), "No daemons set.\nUse e.g. `mirai::daemons(6)` to set 6 local daemons.")
  e <- catch_cnd(require_daemons(.compute = "spec-rq"))
  expect_identical(
    conditionMessage(e),
    "No daemons set for the 'spec-rq' compute profile.\nUse e.g. `mirai::daemons(6, .compute = \"spec-rq\")` to set 6 local daemons."
  )
  # the call is the caller's frame given as `call`
  g <- function() require_daemons(call = environment())
  e <- catch_cnd(g())
  expect_identical(deparse(conditionCall(e)), "g()")
  e <- catch_cnd(everywhere(1))
  expect_identical(deparse(conditionCall(e)), "everywhere(1)")
  expect_identical(conditionMessage(e), "No daemons set.\nUse e.g. `mirai::daemons(6)` to set 6 local daemons.")
  e <- catch_cnd(with_daemons("spec-rq", 1))
  expect_identical(deparse(conditionCall(e)), "with_daemons(\"spec-rq\", 1)")
  expect_match(conditionMessage(e), "No daemons set for the 'spec-rq' compute profile.", fixed = TRUE)
  h <- function() local_daemons("spec-rq")
  e <- catch_cnd(h())
  expect_identical(deparse(conditionCall(e)), "h()")
  # set: invisible TRUE
  spec_daemons(sync = TRUE)
  expect_invisible(require_daemons())
  expect_true(require_daemons())
})

test_that("require_daemons() without cli: a plain error without a call", {
  res <- run_nocli(c(
    "e1 <- tryCatch(require_daemons(), error = identity)",
    "e2 <- tryCatch(require_daemons(.compute = 'spec-rq'), error = identity)",
    "e3 <- tryCatch(everywhere(1), error = identity)",
    "e4 <- tryCatch(with_daemons('spec-rq', 1), error = identity)",
    "result <- lapply(list(e1, e2, e3, e4), function(e) list(class(e), conditionMessage(e), conditionCall(e)))"
  ))
  out <- res$result
  expect_false(is.null(out), info = res$stderr)
  plain <- "No daemons set.\nUse e.g. mirai::daemons(6) to set 6 local daemons."
  prof <- "No daemons set for the 'spec-rq' compute profile.\nUse e.g. mirai::daemons(6, .compute = \"spec-rq\") to set 6 local daemons."
  expect_identical(out[[1]], list(c("simpleError", "error", "condition"), plain, NULL))
  expect_identical(out[[2]], list(c("simpleError", "error", "condition"), prof, NULL))
  expect_identical(out[[3]], list(c("simpleError", "error", "condition"), plain, NULL))
  expect_identical(out[[4]], list(c("simpleError", "error", "condition"), prof, NULL))
})

test_that("daemons_set() reports the current profile by default", {
  expect_false(daemons_set())
  spec_daemons(sync = TRUE, .compute = "spec-ds")
  expect_false(daemons_set())
  expect_true(with_daemons("spec-ds", daemons_set()))
  expect_true(daemons_set(.compute = "spec-ds"))
})

test_that("[EXT] daemons(retry = ): formals, dispatcher requirement, re-queued tasks", {
  spec_reset_on_exit("default")
  skip_if_upstream("[EXT] retry is this package's extension")
  f <- names(formals(daemons))
  expect_identical(f[match("pass", f) + 1L], "retry")
  e <- catch_cnd(daemons(1, dispatcher = FALSE, retry = 1L))
  expect_identical(conditionMessage(e), "`retry` requires dispatcher")
  expect_false(daemons_set())
  spec_daemons(2, retry = 1L)
  flag <- tempfile("retry-flag")
  # the first attempt kills its own daemon; the retry succeeds
  m <- mirai({
    if (!file.exists(flag)) {
      file.create(flag)
      tools::pskill(Sys.getpid(), tools::SIGKILL)
    }
    "second attempt"
  }, flag = flag)
  expect_identical(m[], "second attempt")
  s <- status()
  expect_identical(s$retries, 1L)
  daemons(0)
  # retry = 0 (the default): the task resolves to 19
  spec_daemons(2)
  m <- mirai(tools::pskill(Sys.getpid(), tools::SIGKILL))
  expect_identical(unclass(m[]), 19L)
  expect_null(status()$retries)
})
