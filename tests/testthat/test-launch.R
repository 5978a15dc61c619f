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
  expect_true(all(grepl("mirai::daemon(", cmds, fixed = TRUE)))
  out <- capture.output(print(cmds))
  expect_true("[1]" %in% out)
  expect_true("[2]" %in% out)
  # a command run by hand connects a daemon
  p <- processx::process$new("sh", c("-c", cmds[[1L]]), cleanup = TRUE, cleanup_tree = TRUE)
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1, timeout = 15))
  pid <- mirai(Sys.getpid())[]
  expect_false(pid == Sys.getpid())
  expect_true(pid_alive(pid))
  expect_identical(mirai(2 + 2)[], 4)
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
  daemons(url = local_url(), dispatcher = FALSE)
  on.exit(daemons(0))
  cfg <- remote_config(command = "true", args = list(c("x", "."), c("y", ".")))
  expect_error(launch_remote(3, remote = cfg),
               "`n` must equal the length of `args`, or either must be 1", fixed = TRUE)
  # nothing was launched
  Sys.sleep(0.5)
  expect_identical(status()$connections, 0L)
})

test_that("daemons() reports progress while daemons are slow to connect", {
  local_r_profile("Sys.sleep(2.5)")
  on.exit(daemons(0), add = TRUE)
  expect_message(daemons(1, dispatcher = FALSE), "initial sync with daemon(s)", fixed = TRUE)
  expect_identical(status()$connections, 1L)
  expect_identical(mirai(3L)[], 3L)
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
