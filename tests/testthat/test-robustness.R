# Defects found in review, each with the behaviour that must hold: objects
# that must survive garbage collection, ALTREP and long vectors, R errors
# and interrupts at awkward moments, files a URL must not touch, forked
# children.

# Bytes of memory the system could give now.
available_memory <- function() {
  if (!file.exists("/proc/meminfo")) return(Inf)
  line <- grep("^MemAvailable:", readLines("/proc/meminfo"), value = TRUE)
  as.numeric(sub("^MemAvailable: *([0-9]+) kB$", "\\1", line)) * 1024
}

test_that("an ephemeral mirai survives garbage collection while it runs", {
  daemons(0)
  m <- mirai({
    Sys.sleep(1)
    "still here"
  })
  invisible(gc())
  invisible(gc())
  expect_identical(m[], "still here")
})

test_that("compact (ALTREP) vectors go through without being expanded", {
  daemons(1)
  on.exit(daemons(0))
  # R's heap would grow by the 800 MB of an expanded 1:2e8
  before <- gc(full = TRUE)[2L, 2L]
  expect_identical(mirai(length(x), x = 1:2e8)[], 200000000L)
  x <- seq_len(2e8)
  expect_identical(mirai(sum(as.numeric(x[c(1, 2e8)])), .args = list(x = x))[], 1 + 2e8)
  grew <- gc(full = TRUE)[2L, 2L] - before
  expect_lt(grew, 100)
  # a compact result stays compact on the host
  r <- mirai(seq_len(2e8))[]
  expect_match(capture.output(.Internal(inspect(r)))[1L], "(compact)", fixed = TRUE)
  expect_identical(length(r), 200000000L)
  expect_identical(r[2e8], 200000000L)
})

test_that("long vectors (over 2^31 - 1 elements) travel both ways", {
  skip_if(available_memory() < 12e9, "needs about 10 GB of free memory")
  daemons(1)
  on.exit(daemons(0))
  n <- 2^31 + 8
  x <- raw(n)
  x[n] <- as.raw(7)
  # as a task's argument: its last element read on the daemon
  expect_identical(mirai(x[length(x)], x = x)[], as.raw(7))
  rm(x)
  invisible(gc())
  # as a result: made on the daemon, adopted by the host
  r <- mirai({
    y <- raw(2^31 + 8)
    y[length(y)] <- as.raw(9)
    y
  })[]
  expect_identical(length(r), n)
  expect_identical(r[n], as.raw(9))
  rm(r)
  invisible(gc())
})

# A package installed in `lib` that the host does not have on its library
# path: a daemon adding `lib` can load it and return its namespace.
local_private_package <- function(frame = parent.frame()) {
  src <- tempfile("pkgsrc")
  lib <- tempfile("pkglib")
  dir.create(file.path(src, "R"), recursive = TRUE)
  dir.create(lib)
  writeLines(c("Package: miraiPrivatePkg", "Version: 0.0.1", "Title: Test",
               "Description: Test package.", "License: MIT",
               "Authors@R: person('a', 'b', role = c('aut', 'cre'), email = 'a@b.c')"),
             file.path(src, "DESCRIPTION"))
  writeLines("export(hello)", file.path(src, "NAMESPACE"))
  writeLines("hello <- function() 'hello'", file.path(src, "R", "hello.R"))
  out <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "-l", shQuote(lib), shQuote(src)),
                 stdout = TRUE, stderr = TRUE)
  if (!file.exists(file.path(lib, "miraiPrivatePkg"))) skip(paste(out, collapse = "\n"))
  do.call(on.exit, list(quote(unlink(c(src, lib), recursive = TRUE)), add = TRUE), envir = frame)
  lib
}

test_that("a result the host cannot unserialize is a miraiError saying why; nothing breaks", {
  lib <- local_private_package()
  daemons(1)
  on.exit(daemons(0))
  handled <- FALSE
  old <- options(error = function() handled <<- TRUE)
  on.exit(options(old), add = TRUE)
  printed <- capture.output(type = "message", {
    out <- capture.output({
      r <- mirai({
        .libPaths(c(lib, .libPaths()))
        asNamespace("miraiPrivatePkg")
      }, lib = lib)[]
    })
  })
  expect_true(is_mirai_error(r))
  expect_match(conditionMessage(r), "could not be unserialized")
  expect_match(conditionMessage(r), "miraiPrivatePkg")
  # nothing printed, no error handler run, and every later call works
  expect_identical(c(out, printed), character(0))
  expect_false(handled)
  expect_identical(mirai(21 * 2)[], 42)
  expect_identical(mirai_map(1:3, function(i) i)[.flat], 1:3)
  expect_identical(status()$connections, 1L)
})

test_that("a result the host has no memory for is a miraiError; the daemon serves on", {
  skip_if(!nzchar(Sys.which("prlimit")), "prlimit (util-linux) not found")
  # a fresh R whose address space is capped (prlimit on itself) once its
  # daemon is connected: 400 MB more than it has, too little for an
  # 800 MB result but enough for everything else
  for (disp in c(TRUE, FALSE)) {
    res <- run_nocli(c(
      sprintf("daemons(1, dispatcher = %s)", disp),
      "x <- runif(1e8)",
      "stopifnot(isTRUE(mirai(TRUE)[]))",
      "vsz <- as.numeric(system(sprintf('ps -o vsz= -p %d', Sys.getpid()), intern = TRUE)) * 1024",
      "system(sprintf('prlimit --pid %d --as=%.0f', Sys.getpid(), vsz + 400e6))",
      "big <- mirai(numeric(1e8))[]",
      "nested <- mirai(list(numeric(1e8)))[]",
      # a large plain argument still goes out (sent from R's own memory)
      "sent <- mirai(length(x), x = x)[]",
      "after <- mirai(1 + 1, .timeout = 20000)[]",
      "result <- list(big = big, nested = nested, sent = sent, after = after)"
    ), timeout = 120)
    r <- res$result
    expect_true(is_mirai_error(r$big))
    expect_match(conditionMessage(r$big), "could not be allocated on the host", fixed = TRUE)
    expect_true(is_mirai_error(r$nested))
    expect_identical(r$sent, 1e8L)
    expect_identical(r$after, 2)
  }
})

test_that("an interrupt reaching a daemon between tasks does not end it", {
  daemons(1, dispatcher = FALSE)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  for (i in 1:3) {
    tools::pskill(pid, tools::SIGINT)
    # a user's SIGINT is noticed between tasks (ignored) or, if it lands as
    # the next task starts, interrupts that task (a miraiInterrupt); either
    # way the daemon serves on
    r <- mirai({
      Sys.sleep(0.1)
      Sys.getpid()
    })[]
    expect_true(identical(r, pid) || is_mirai_interrupt(r))
  }
  expect_identical(mirai({
    Sys.sleep(0.3)
    Sys.getpid()
  })[], pid)
  expect_identical(status()$connections, 1L)
})

test_that("cancellations racing completion never hit the daemon's next task", {
  daemons(1)
  on.exit(daemons(0))
  pid <- mirai(Sys.getpid())[]
  for (i in 1:40) {
    m <- mirai(Sys.sleep(0.005 * (i %% 4)))
    Sys.sleep(0.005 * (i %% 5))
    stop_mirai(m)
    call_mirai(m)
  }
  # the same daemon serves on, and a task that takes a while is not
  # interrupted by a signal left over from a cancellation
  long <- mirai({
    Sys.sleep(0.5)
    Sys.getpid()
  })
  expect_identical(long[], pid)
  expect_identical(status()$connections, 1L)
})

test_that("an ipc:// URL naming an ordinary file fails and leaves the file alone", {
  f <- tempfile("precious")
  writeLines("user data", f)
  on.exit(unlink(f))
  e <- tryCatch(daemons(url = paste0("ipc://", f)), error = identity)
  expect_s3_class(e, "error")
  expect_identical(conditionMessage(e), "10 | Address in use")
  expect_identical(readLines(f), "user data")
  expect_false(daemons_set())
  # a directory is refused the same way
  d <- tempfile("dir")
  dir.create(d)
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  expect_error(daemons(url = paste0("ipc://", d)), "Address in use")
  expect_true(dir.exists(d))
  # a stale socket left by a host that died is replaced
  s <- tempfile("sock")
  p <- r_process(sprintf("library(mirai); daemons(url = 'ipc://%s'); cat('READY\\n'); Sys.sleep(60)", s))
  on.exit(kill_process(p), add = TRUE)
  read_lines_until(p, function(l) any(l == "READY"))
  p$kill()
  expect_true(wait_for(function() !p$is_alive()))
  expect_true(file.exists(s))
  daemons(url = paste0("ipc://", s))
  on.exit(daemons(0), add = TRUE)
  launch_local(1)
  expect_true(wait_conn(1))
  expect_identical(mirai("over a reused path")[], "over a reused path")
})

test_that("[.stop] still stops at an error whose value unresolved() collected first", {
  daemons(1)
  on.exit(daemons(0))
  mp <- mirai_map(1:3, function(x) if (x == 2) stop("second") else x)
  call_mirai(mp)
  expect_false(unresolved(mp))
  expect_true(is_mirai_error(mp[[2]]$data))
  expect_error(mp[.stop], "second")
})

test_that("mirai in a forked child (parallel::mclapply) errors clearly, without hanging", {
  skip_on_os("windows")
  p <- r_process(paste(
    "library(mirai)",
    "daemons(1)",
    "r <- parallel::mclapply(1:2, function(i) tryCatch(mirai(1)[], error = conditionMessage), mc.cores = 2)",
    "cat(unlist(r), sep = '\\n')",
    "cat('DONE\\n')",
    "daemons(0)",
    sep = "; "
  ))
  on.exit(kill_process(p))
  lines <- read_lines_until(p, function(l) any(l == "DONE"), timeout = 60)
  expect_true(any(lines == "DONE"))
  expect_identical(sum(grepl("forked child process", lines)), 2L)
})

test_that("errors inside errors come back as miraiErrors, and the daemon serves on", {
  daemons(1)
  on.exit(daemons(0))
  # an error raised by an error handler
  e <- mirai(tryCatch(stop("inner"), error = function(e) stop("outer")))[]
  expect_true(is_mirai_error(e))
  expect_identical(e$message, "outer")
  # a condition whose message method itself fails (R's stop() asks for the
  # message): that error is the one returned
  e <- mirai({
    cnd <- structure(class = c("odd_error", "error", "condition"),
                     list(message = "odd", call = NULL))
    registerS3method("conditionMessage", "odd_error", function(c) stop("no message"))
    stop(cnd)
  })[]
  expect_true(is_mirai_error(e))
  expect_identical(e$message, "no message")
  # a condition signalled with extra fields keeps them, in order
  e <- mirai(stop(structure(class = c("rich_error", "error", "condition"),
                            list(message = "rich", call = quote(g(1)), data = 1:3))))[]
  expect_identical(unclass(e)[1L], "Error in g(1): rich")
  expect_identical(names(attributes(e)),
                   c("message", "call", "data", "condition.class", "stack.trace", "class"))
  expect_identical(e$data, 1:3)
  # an error while printing the value of an error (a failing print method
  # is never called on the daemon: values are returned, not printed)
  v <- mirai(structure(1, class = "unprintable"))[]
  expect_identical(unclass(v), 1)
  # a deeply recursive error: the stack trace is kept
  e <- mirai({
    f <- function(n) if (n == 0) stop("bottom") else f(n - 1)
    f(50)
  })[]
  expect_identical(e$message, "bottom")
  expect_length(e$stack.trace, 52L)
  expect_identical(mirai("still serving")[], "still serving")
})
