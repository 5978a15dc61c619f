# A Shiny ExtendedTask backed by mirai, exercised in a real headless
# Chromium: the app (shiny-app/app.R) runs in a background R process and
# tools/browser/shiny-task.mjs drives it.

browser_dir <- function() normalizePath(test_path("..", "..", "tools", "browser"), mustWork = FALSE)

test_that("an ExtendedTask runs a mirai, stays responsive, cancels, then runs the queued call", {
  skip_if_not_installed("shiny", "1.8.1")
  skip_if_not_installed("promises")
  skip_if_not_installed("httpuv")
  skip_if_not_installed("processx")
  skip_if_not(file.exists("/usr/bin/chromium"), "chromium is not installed")
  node <- Sys.which("node")
  skip_if(!nzchar(node), "node is not installed")
  skip_if_not(dir.exists(file.path(browser_dir(), "node_modules", "playwright-core")),
              "tools/browser/node_modules is missing (run npm ci there)")

  port <- httpuv::randomPort(host = "127.0.0.1")
  app <- r_process(
    sprintf("shiny::runApp(%s, port = %dL, host = '127.0.0.1', launch.browser = FALSE)",
            deparse(normalizePath(test_path("shiny-app"))), port),
    stderr = "2>&1"
  )
  on.exit(kill_process(app), add = TRUE)
  lines <- read_lines_until(app, function(l) any(grepl("Listening on", l, fixed = TRUE)), timeout = 60)
  expect_true(any(grepl(sprintf("Listening on http://127.0.0.1:%d", port), lines, fixed = TRUE)),
              info = paste(lines, collapse = "\n"))
  url <- sprintf("http://127.0.0.1:%d", port)
  # the first page can take a moment on a loaded machine: ask until it
  # comes (bounded)
  page <- character()
  wait_for(function() {
    page <<- suppressWarnings(tryCatch(readLines(url, warn = FALSE), error = function(e) character()))
    length(page) > 0L
  }, timeout = 60, interval = 0.5)
  expect_true(any(grepl("Run task", page, fixed = TRUE)))

  artifacts <- Sys.getenv("MIRAI_ARTIFACTS", tempfile("mirai-artifacts-"))
  dir.create(artifacts, recursive = TRUE, showWarnings = FALSE)
  run <- processx::run(
    node, c(file.path(browser_dir(), "shiny-task.mjs"), url),
    env = c("current", MIRAI_ARTIFACTS = artifacts),
    timeout = 180, error_on_status = FALSE, stderr_to_stdout = TRUE
  )
  out <- strsplit(run$stdout, "\n", fixed = TRUE)[[1L]]
  info <- paste(c(out, app$read_output_lines()), collapse = "\n")
  expect_identical(run$status, 0L, info = info)
  expect_false(run$timeout, info = info)
  expect_true("PASS" %in% out, info = info)
  expect_false(any(startsWith(out, "FAIL")), info = info)
  for (check in c(
    "ok: ping answers while the task runs",
    "ok: the task is still running, the second invocation still queued",
    "ok: the cancelled task was rejected",
    "ok: the queued invocation delivered its result"
  )) expect_true(any(startsWith(out, check)), info = check)
  shot <- sub("^screenshot: ", "", grep("^screenshot: ", out, value = TRUE))
  expect_length(shot, 1L)
  expect_identical(normalizePath(dirname(shot)), normalizePath(artifacts))
  expect_true(file.exists(shot))
  expect_identical(readBin(shot, "raw", 4L), as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  # the app served to the end (it is killed on exit, daemons and all)
  expect_true(app$is_alive())
})
