# Launchers: launch_remote() commands and launch configurations,
# local_url(), and daemons() reporting progress while daemons start.

test_that("local_url() gives fresh local URLs", {
  u1 <- local_url()
  u2 <- local_url()
  expect_type(u1, "character")
  expect_false(identical(u1, u2))
  expect_match(u1, "^(abstract|ipc)://")
  expect_identical(local_url(tcp = TRUE), "tcp://127.0.0.1:0")
  expect_identical(local_url(tcp = TRUE, port = 5555), "tcp://127.0.0.1:5555")
})

test_that("launch_remote() without a command returns the commands to run by hand", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  url <- status()$daemons
  cmds <- launch_remote(2)
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_length(cmds, 2L)
  expect_true(all(grepl(url, cmds, fixed = TRUE)))
  expect_true(all(startsWith(cmds, "Rscript -e 'mirai::daemon(")))
  # each command has its own random-number stream
  expect_false(identical(cmd_rs(cmds[[1L]]), cmd_rs(cmds[[2L]])))
  out <- capture.output(print(cmds))
  expect_identical(out[c(1L, 4L)], c("[1]", "[2]"))
  # printed as the shell command to run, with the host's secret
  expect_identical(out[2L], sprintf("MIRAI_SECRET=%s %s", TEST_SECRET, cmds[[1L]]))
  # the printed command, run by hand where the secret is not otherwise
  # known, connects a daemon (its Rscript made the one of this R)
  printed <- sub("Rscript", rscript(), out[2L], fixed = TRUE)
  p <- processx::process$new("sh", c("-c", printed), env = c("current", MIRAI_SECRET = ""),
                             cleanup = TRUE, cleanup_tree = TRUE)
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 15))
  pid <- mirai(Sys.getpid())[]
  expect_false(pid == Sys.getpid())
  expect_true(pid_alive(pid))
  expect_identical(mirai(2 + 2)[], 4)
  # without the secret, the same command is refused
  bare <- sub("^MIRAI_SECRET=[^ ]+ ", "", printed)
  q <- processx::process$new("sh", c("-c", bare), env = c("current", MIRAI_SECRET = "wrong"),
                             cleanup = TRUE, cleanup_tree = TRUE)
  on.exit(kill_process(q), add = TRUE)
  expect_true(wait_for(function() status()$refused >= 1L, timeout = 15))
  expect_identical(status()$connections, 1L)
})

test_that("launch_remote() runs a launch configuration", {
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  on.exit(daemons(0))
  # a launcher script whose path contains dots: only the "." element of
  # `args` is replaced by the daemon command
  script <- tempfile("launch.daemon.", fileext = ".sh")
  writeLines('exec sh -c "$1"', script)
  cfg <- remote_config(command = "sh", args = c(script, "."), quote = TRUE)
  expect_type(cfg, "list")
  cmds <- launch_remote(2, remote = cfg)
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_true(wait_conn(2, timeout = 15))
  pids <- unique(unlist(collect_mirai(lapply(1:6, function(i) mirai(Sys.getpid())))))
  expect_length(pids, 2L)
  on.exit(for (p in pids) if (pid_alive(p)) tools::pskill(p, tools::SIGKILL), add = TRUE)
  daemons(0)
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 5))
})

test_that("remote_config() and launch_remote() argument errors", {
  expect_error(remote_config(args = c("a", "b")),
               "`.` must be an element of the character vector(s) supplied to `args`", fixed = TRUE)
  expect_error(remote_config(args = list(c("a", "."), "b")),
               "`.` must be an element of the character vector(s) supplied to `args`", fixed = TRUE)
  expect_error(remote_config(args = c(NA, "b")), "`.` must be an element", fixed = TRUE)
  daemons(url = local_url(), dispatcher = FALSE)
  on.exit(daemons(0))
  first <- launch_remote(1)
  rec <- recorder_script()
  cfg <- remote_config(command = rec$path, args = list(c("x", "."), c("y", ".")))
  expect_error(launch_remote(3, remote = cfg),
               "`n` must equal the length of `args`, or either must be 1", fixed = TRUE)
  # nothing was built or run: no random-number stream was taken
  after <- launch_remote(1)
  expect_identical(cmd_rs(after), as.integer(parallel::nextRNGStream(cmd_rs(first))))
  expect_false(file.exists(rec$args))
})

test_that("the launchers take a single non-negative number of daemons", {
  daemons(url = local_url())
  on.exit(daemons(0))
  msg <- "`n` must be a single non-negative number of daemons"
  for (bad in list("2", -1, 1:2, NA, NA_integer_, Inf, NULL, TRUE, list(1))) {
    expect_error(launch_local(bad), msg, fixed = TRUE)
    expect_error(launch_remote(bad), msg, fixed = TRUE)
  }
  e <- catch_cnd(launch_remote(1:2))
  expect_identical(conditionCall(e), quote(launch_remote(1:2)))
  expect_identical(launch_local(0), 0)
  cmds <- launch_remote(0)
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_length(cmds, 0L)
  # fractions are truncated
  expect_length(launch_remote(2.7), 2L)
  expect_identical(status()$connections, 0L)
  expect_identical(launch_local(1.5), 1.5)
  expect_true(wait_conn(1, timeout = 20))
  # `remote` must be a configuration
  expect_error(launch_remote(1, remote = "ssh"), "`remote` must be a launch configuration")
})

test_that("daemons() waits silently for daemons that are slow to connect", {
  # daemons are slowed at start-up by a user profile (they are R processes);
  # the progress message comes only after 10 s without dispatcher
  local_r_profile("Sys.sleep(1.5)")
  on.exit(daemons(0), add = TRUE)
  for (disp in c(TRUE, FALSE)) {
    started <- Sys.time()
    expect_silent(daemons(1, dispatcher = disp))
    expect_gt(as.numeric(difftime(Sys.time(), started, units = "secs")), 1.5)
    expect_identical(status()$connections, 1L)
    expect_identical(mirai(3L)[], 3L)
  }
})

test_that("daemons() fails at once, leaving no profile, when daemon processes die before connecting", {
  local_r_profile("quit(save = 'no', status = 1)")
  on.exit(daemons(0), add = TRUE)
  started <- Sys.time()
  expect_error(daemons(2, dispatcher = FALSE), "2 of 2 daemon processes exited before connecting")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 15)
  expect_false(daemons_set())
  # the session is unharmed: with a working profile, daemons start
  Sys.unsetenv("R_PROFILE_USER")
  daemons(1, dispatcher = FALSE)
  expect_identical(mirai(5L)[], 5L)
})
