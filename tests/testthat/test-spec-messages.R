# Exports and S3 methods (SPEC preamble), Appendix A: the message
# catalogue, print formats and the visibility of every function;
# Deviations 18.

test_that("every upstream export is exported", {
  skip_without_ecosystem()
  spec_exports <- c(
    "mirai", "try_mirai", "everywhere", "call_mirai", "collect_mirai", "unresolved",
    "race_mirai", "stop_mirai", "is_mirai", "is_mirai_map", "is_mirai_error",
    "is_mirai_interrupt", "is_error_value", "on_daemon", "mirai_map", ".flat",
    ".progress", ".stop", "daemons", "daemon", "daemons_set", "require_daemons",
    "with_daemons", "local_daemons", "status", "info", "launch_local",
    "launch_remote", "remote_config", "ssh_config", "cluster_config",
    "http_config", "host_url", "local_url", "nextstream", "nextget", "nextcode",
    "make_cluster", "stop_cluster", "serial_config", "register_serial"
  )
  expect_identical(setdiff(spec_exports, getNamespaceExports("mirai")), character(0))
})

test_that("the S3 methods are registered", {
  skip_without_ecosystem()
  methods <- list(
    c("print", "mirai"), c("print", "mirai_map"), c("print", "miraiError"),
    c("print", "miraiInterrupt"), c("print", "miraiDaemons"), c("print", "miraiLaunchCmd"),
    c("print", "miraiCluster"), c("print", "miraiNode"), c("print", "errorValue"),
    c("print", "unresolvedValue"), c("[", "mirai"), c("[", "mirai_map"),
    c("[", "miraiCluster"), c("$", "miraiError"), c(".DollarNames", "miraiError"),
    c("conditionCall", "miraiError"), c("conditionMessage", "miraiError"),
    c("with", "miraiDaemons")
  )
  for (m in methods) {
    expect_true(is.function(getS3method(m[1L], m[2L], optional = TRUE)), info = paste(m, collapse = "."))
  }
})

test_that("daemons() formals (upstream's, plus only the [EXT] retry)", {
  expect_identical(
    setdiff(names(formals(daemons)), "retry"),
    c("n", "url", "remote", "dispatcher", "...", "sync", "seed", "memory", "serial", "tls", "pass", ".compute")
  )
  expect_identical(names(formals(everywhere)), c(".expr", "...", ".args", ".min", ".compute"))
  expect_identical(names(formals(mirai_map)), c(".x", ".f", "...", ".args", ".promise", ".compute"))
  expect_identical(names(formals(launch_local)), c("n", "...", ".compute"))
  expect_identical(names(formals(launch_remote)), c("n", "remote", "...", ".compute"))
  expect_identical(names(formals(nextget)), c("x", ".compute"))
  expect_identical(formals(nextget)$.compute, "default")
  expect_identical(formals(nextstream)$.compute, "default")
  expect_identical(names(formals(require_daemons)), c(".compute", "call"))
  expect_identical(names(formals(local_daemons)), c(".compute", "frame"))
  expect_identical(names(formals(with_daemons)), c(".compute", "expr"))
  expect_identical(names(formals(collect_mirai)), c("x", "options"))
  expect_identical(names(formals(race_mirai)), c("x", ".compute"))
})

test_that("Appendix A messages not covered elsewhere", {
  skip_without_ecosystem()
  expect_identical(conditionMessage(catch_cnd(make_cluster("a"))), "`n` must be numeric, did you mean to provide `url`?")
  expect_identical(conditionMessage(catch_cnd(make_cluster(0))), "`n` must be 1 or greater")
  expect_identical(conditionMessage(catch_cnd(serial_config(1, identity, identity))), "`class` must be a character vector")
  expect_identical(
    conditionMessage(catch_cnd(serial_config(c("a", "b"), identity, identity))),
    "`class`, `sfunc` and `ufunc` must all be the same length"
  )
  expect_identical(conditionMessage(catch_cnd(serial_config("a", 1, identity))), "`sfunc` must be a function or list of functions")
  expect_identical(conditionMessage(catch_cnd(serial_config("a", identity, 1))), "`ufunc` must be a function or list of functions")
})

test_that("visibility of every function (Appendix A)", {
  # invisible
  expect_invisible(spec_daemons(1))
  expect_invisible(m <- mirai(1))
  expect_invisible(try_mirai(1))
  expect_invisible(everywhere(1))
  expect_invisible(mirai_map(1:2, identity))
  expect_invisible(call_mirai(m))
  expect_invisible(race_mirai(list(m)))
  expect_invisible(stop_mirai(m))
  expect_invisible(require_daemons())
  f <- function() local_daemons("default")
  expect_invisible(f())
  # visible
  expect_visible(collect_mirai(m))
  expect_visible(m[])
  mp <- mirai_map(1:2, identity)
  expect_visible(mp[])
  expect_visible(mp[.flat])
  expect_visible(unresolved(m))
  expect_visible(status())
  expect_visible(info())
  expect_visible(daemons_set())
  expect_visible(nextstream())
  expect_visible(nextget("n"))
  expect_visible(nextcode(0L))
  expect_visible(remote_config())
  expect_visible(ssh_config("ssh://h"))
  expect_visible(cluster_config())
  expect_visible(http_config())
  expect_visible(host_url())
  expect_visible(local_url())
  if (exists("serial_config", envir = asNamespace("mirai"))) expect_visible(serial_config("a", identity, identity))
  expect_visible(with_daemons("default", 1))
  expect_visible(is_mirai(m))
  expect_visible(on_daemon())
  daemons(0)
  spec_daemons(url = "tcp://127.0.0.1:0")
  v <- withVisible(launch_remote(1))
  expect_true(v$visible)
  v <- withVisible(launch_local(1))
  expect_true(v$visible)
  expect_true(wait_conn(1, timeout = 20))
  expect_invisible(daemons(0))
  v <- withVisible(with(daemons(sync = TRUE, .compute = "spec-vis"), 1))
  expect_true(v$visible)
  expect_identical(v$value, 1)
})

test_that("register_serial() returns NULL invisibly (in a separate session)", {
  skip_without_ecosystem()
  # run elsewhere: the registry would apply to every later daemons() call here
  res <- run_nocli(c(
    "v <- withVisible(register_serial('spec_cls', function(x) serialize(x, NULL), unserialize))",
    "result <- list(v$visible, v$value)"
  ))
  expect_identical(res$result, list(FALSE, NULL))
})
