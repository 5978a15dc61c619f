# SPEC 3.11: synchronous mode; Deviations 19.

test_that("sync mode evaluates before mirai() returns, in the calling process", {
  d <- spec_daemons(sync = TRUE)
  expect_identical(class(d), c("miraiDaemons", "default"))
  m <- mirai(Sys.getpid())
  expect_false(unresolved(m))
  expect_identical(capture.output(print(m)), "< mirai [$data] >")
  expect_identical(m$data, Sys.getpid())
  expect_true(mirai(mirai::on_daemon())[])
  expect_false(on_daemon())
  # n is ignored
  daemons(0)
  spec_daemons(5, sync = TRUE)
  expect_identical(nextget("n"), 1L)
})

test_that("sync mode: host globals are isolated and restored exactly", {
  spec_daemons(sync = TRUE)
  assign("spec_host_glob", "host", envir = globalenv())
  spec_defer(rm("spec_host_glob", envir = globalenv()))
  r <- mirai({
    seen <- exists("spec_host_glob", envir = globalenv(), inherits = FALSE)
    assign("spec_host_glob", "task", envir = globalenv())
    assign("spec_task_glob", 1, envir = globalenv())
    seen
  })[]
  expect_false(r)
  expect_identical(get("spec_host_glob", envir = globalenv()), "host")
  expect_false(exists("spec_task_glob", envir = globalenv(), inherits = FALSE))
})

test_that("sync mode: everywhere() state persists, task globals and `...` are cleaned up", {
  spec_daemons(sync = TRUE)
  everywhere(sync_kept <<- "kept", sync_dot = "dot")[]
  expect_identical(mirai(list(sync_kept, sync_dot))[], list("kept", "dot"))
  mirai(assign("sync_tmp", 1, envir = globalenv()), tmp_dot = 2)[]
  expect_identical(
    mirai(c(exists("sync_tmp", envir = globalenv(), inherits = FALSE),
            exists("tmp_dot", envir = globalenv(), inherits = FALSE)))[],
    c(FALSE, FALSE)
  )
  expect_identical(mirai(sync_kept)[], "kept")
  expect_false(exists("sync_kept", envir = globalenv(), inherits = FALSE))
})

test_that("sync mode: output is shown", {
  spec_daemons(sync = TRUE)
  expect_output(mirai(cat("sync says hi\n")), "sync says hi", fixed = TRUE)
})

test_that("sync mode: status(), info(), nextget()", {
  spec_daemons(sync = TRUE)
  s <- status()
  expect_identical(names(s)[1:2], c("connections", "daemons"))
  expect_identical(s$connections, 0L)
  expect_match(s$daemons, "^inproc://[0-9a-f]{24}$")
  expect_identical(info(), c(connections = 0L, cumulative = NA_integer_, awaiting = NA_integer_,
                             executing = NA_integer_, completed = NA_integer_))
  expect_identical(nextget("sync"), TRUE)
  expect_null(nextget("dispatcher"))
  expect_identical(nextget("url"), s$daemons)
})

test_that("sync mode: launchers error; maps and everywhere work", {
  spec_daemons(sync = TRUE)
  msg <- "daemons cannot be launched for synchronous compute profiles"
  expect_identical(conditionMessage(catch_cnd(launch_local(1))), msg)
  expect_identical(conditionMessage(catch_cnd(launch_remote(1))), msg)
  mp <- mirai_map(c(a = 1, b = 2), function(x) x * 3)
  expect_identical(mp[], list(a = 3, b = 6))
  ew <- everywhere(1)
  expect_length(ew, 1L)
  expect_identical(ew[], list(1))
  expect_true(is_mirai_error(mirai(stop("sync error"))[]))
  expect_identical(as.character(unclass(mirai(stop("sync error"))[]))[1L], "Error: sync error")
})

test_that("sync mode overrides url, dispatcher and remote", {
  spec_daemons(sync = TRUE, url = "tcp://127.0.0.1:0", dispatcher = TRUE,
               remote = remote_config(command = "spec-no-such-command-xyz"))
  expect_match(status()$daemons, "^inproc://")
  expect_null(status()$mirai)
  expect_identical(mirai(2 + 2)[], 4)
})
