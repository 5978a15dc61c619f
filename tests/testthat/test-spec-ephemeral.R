# SPEC 3.10: ephemeral daemons (no profile set); Deviations 20.

test_that("an ephemeral mirai runs in another process and behaves like any other", {
  expect_false(daemons_set())
  expect_invisible(m <- mirai(list(pid = Sys.getpid(), on = mirai::on_daemon())))
  expect_identical(class(m), c("mirai", "recvAio"))
  r <- m[]
  expect_false(identical(r$pid, Sys.getpid()))
  expect_true(r$on)
  expect_true(is_mirai_error(mirai(stop("eph"))[]))
  expect_identical(mirai(a + b, a = 1, .args = list(b = 2))[], 3)
})

test_that("an ephemeral mirai survives gc() while referenced; its process ends with it", {
  g <- new_gate()
  w <- gate_fun(g)
  pidfile <- tempfile("pid")
  m <- mirai({
    writeLines(as.character(Sys.getpid()), pidfile)
    w("survived")
  }, w = w, pidfile = pidfile)
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 1L, timeout = 20))
  pid <- as.integer(readLines(pidfile))
  for (i in 1:3) gc()
  expect_true(pid_alive(pid))
  open_gate(g)
  expect_identical(m[], "survived")
  # once the mirai is garbage collected the process exits
  pidfile2 <- tempfile("pid")
  g2 <- new_gate()
  w2 <- gate_fun(g2, secs = 60)
  m2 <- mirai({
    writeLines(as.character(Sys.getpid()), pidfile2)
    w2()
  }, w2 = w2, pidfile2 = pidfile2)
  expect_true(wait_for(function() file.exists(pidfile2) && length(readLines(pidfile2)) == 1L, timeout = 20))
  pid2 <- as.integer(readLines(pidfile2))
  rm(m2)
  gc()
  expect_true(wait_for(function() { gc(); !pid_alive(pid2) }, timeout = 20))
  if (pid_alive(pid2)) tools::pskill(pid2)
})

test_that("ephemeral: .timeout gives 5; stop_mirai() gives 20 and returns FALSE; no seeds", {
  m <- mirai(Sys.sleep(5), .timeout = 200)
  expect_identical(unclass(m[]), 5L)
  m <- mirai(Sys.sleep(5))
  expect_identical(stop_mirai(m), FALSE)
  expect_identical(unclass(m$data), 20L)
  expect_null(nextstream())
  expect_null(nextget("stream"))
})

test_that("ephemeral daemons also serve named profiles without daemons, and try_mirai()", {
  m <- try_mirai(mirai::on_daemon(), .compute = "spec-eph")
  expect_true(m[])
  expect_false(daemons_set(.compute = "spec-eph"))
})

test_that("the ephemeral daemon is an Rscript running mirai:::.daemon()", {
  g <- new_gate()
  w <- gate_fun(g)
  pidfile <- tempfile("pid")
  m <- mirai({writeLines(as.character(Sys.getpid()), pidfile); w(); 1}, w = w, pidfile = pidfile)
  expect_true(wait_for(function() file.exists(pidfile) && length(readLines(pidfile)) == 1L, timeout = 20))
  cl <- proc_cmdline(as.integer(readLines(pidfile)))
  open_gate(g)
  expect_match(cl, "mirai:::.daemon(", fixed = TRUE)
  expect_identical(m[], 1)
})

test_that("an ephemeral daemon's output is discarded", {
  # in a fresh R whose own stdout and stderr are captured: the task's
  # cat(), message() and warning() reach neither
  res <- run_nocli(c(
    "m <- mirai({cat('EPHEMERAL-OUT\\n'); message('EPHEMERAL-ERR'); warning('EPHEMERAL-WARN'); 7L})",
    "result <- m[]",
    "cat('HOST-OUT\\n')"
  ), timeout = 60)
  expect_identical(res$result, 7L)
  expect_true("HOST-OUT" %in% res$stdout)
  expect_false(any(grepl("EPHEMERAL", res$stdout)))
  expect_false(grepl("EPHEMERAL", res$stderr))
})
