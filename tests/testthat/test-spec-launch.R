# SPEC 3.6 launch_local() / launch_remote(), 4.3 launch configurations,
# 4.4 how commands are run; Deviations 17, 18.

test_that("launchers require set, non-sync daemons", {
  msg <- "daemons must be set to use this function"
  expect_identical(conditionMessage(catch_cnd(launch_local(1))), msg)
  expect_identical(conditionMessage(catch_cnd(launch_remote(1))), msg)
  expect_identical(conditionMessage(catch_cnd(launch_local(1, .compute = "spec-l-none"))), msg)
})

test_that("launch_local() launches n daemons, returns n visibly, does not wait", {
  for (disp in c(TRUE, FALSE)) {
    spec_daemons(url = local_url(), dispatcher = disp)
    expect_identical(status()$connections, 0L)
    v <- withVisible(launch_local(2))
    expect_true(v$visible)
    expect_identical(v$value, 2)
    expect_identical(launch_local(1L), 1L)
    expect_true(wait_conn(3, timeout = 20))
    pid <- mirai(Sys.getpid())[]
    # the local daemon's command line contains mirai::daemon(
    expect_match(proc_cmdline(pid), "mirai::daemon(", fixed = TRUE)
    daemons(0)
  }
})

test_that("launch_local(...) settings replace the profile's for that call", {
  spec_daemons(url = local_url(), cleanup = FALSE)
  launch_local(1, maxtasks = 1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("only task")[], "only task")
  # the daemon leaves after its task limit
  expect_true(wait_conn(0, timeout = 20))
  expect_identical(nextget("dots"), ",cleanup=FALSE")
})

test_that("launch_local() is permitted inside a mirai_map() task", {
  spec_daemons(1)
  r <- mirai_map(1, function(x) {
    mirai::daemons(url = mirai::local_url(), .compute = "inner")
    on.exit(mirai::daemons(0, .compute = "inner"))
    n <- mirai::launch_local(1L, .compute = "inner")
    list(n, mirai::mirai("inner ok", .compute = "inner")[])
  })[]
  expect_identical(r, list(list(1L, "inner ok")))
})

test_that("launch_remote() command text: dispatcher and direct forms, settings, printing", {
  spec_daemons(url = "tcp://127.0.0.1:0", cleanup = FALSE, output = TRUE)
  url <- nextget("url")
  v <- withVisible(launch_remote(2))
  expect_true(v$visible)
  cmds <- v$value
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_identical(class(cmds), "miraiLaunchCmd")
  expect_type(cmds, "character")
  one <- sprintf("Rscript -e 'mirai::daemon(\"%s\",cleanup=FALSE,output=TRUE)'", url)
  expect_identical(unclass(cmds), c(one, one))
  # printed as the shell commands to run: with the host's secret ([EXT] 4.2)
  printed <- capture.output(print(cmds))
  expect_identical(strip_secret(printed), c("[1]", one, "", "[2]", one, ""))
  expect_match(printed[2L], "^MIRAI_SECRET=[^ ]+ Rscript -e ")
  out <- NULL
  capture.output(out <- withVisible(print(cmds)))
  expect_false(out$visible)
  expect_identical(out$value, cmds)
  # settings given in ... replace the stored ones
  cmd <- launch_remote(1, idletime = 5000, cleanup = TRUE)
  expect_identical(unclass(cmd), sprintf("Rscript -e 'mirai::daemon(\"%s\",idletime=5000,cleanup=TRUE)'", url))
  # rscript from the config
  cmd <- launch_remote(1, remote = remote_config(rscript = "/opt/R/bin/Rscript"))
  expect_identical(unclass(cmd), sprintf("/opt/R/bin/Rscript -e 'mirai::daemon(\"%s\",cleanup=FALSE,output=TRUE)'", url))
  daemons(0)

  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, seed = 2L, maxtasks = 10)
  url <- nextget("url")
  cmd <- launch_remote(1)
  expect_identical(unclass(cmd), sprintf("Rscript -e 'mirai::daemon(\"%s\",dispatcher=FALSE,maxtasks=10,rs=c())'", url))
})

test_that("launch_remote() embeds the profile's TLS client setting", {
  spec_daemons(url = "tls+tcp://127.0.0.1:0")
  url <- nextget("url")
  tls <- nextget("tls")
  expect_type(tls, "character")
  expect_length(tls, 2L)
  expect_identical(tls[2L], "")
  expect_match(tls[1L], "^-----BEGIN CERTIFICATE-----\n")
  cmd <- launch_remote(1)
  expect_identical(
    unclass(cmd),
    sprintf("Rscript -e 'mirai::daemon(\"%s\",tlscert=c(\"%s\",\"\"))'", url, tls[1L])
  )
  # launch_local passes it: the daemon connects over TLS
  launch_local(1)
  expect_true(wait_conn(1, timeout = 20))
  expect_identical(mirai("over tls")[], "over tls")
})

test_that("launch_remote() with a list of args: n must be 1 or its length", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  cfg <- ssh_config(c("ssh://h1", "ssh://h2", "ssh://h3"))
  cfg$command <- NULL # build the commands without running anything
  expect_length(launch_remote(1, remote = cfg), 1L)
  rec <- recorder_script()
  cfg <- remote_config(command = rec$path, args = list(c("a", "."), c("b", "."), c("c", ".")))
  e <- catch_cnd(launch_remote(2, remote = cfg))
  expect_identical(conditionMessage(e), "`n` must equal the length of `args`, or either must be 1")
  one <- remote_config(command = rec$path, args = list(c("a", ".")))
  expect_length(launch_remote(2, remote = one), 2L)
})

test_that("commands are run: quote = TRUE replaces '.' with the shell-quoted command", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  rec <- recorder_script()
  cfg <- ssh_config("ssh://user@example-host:2222", timeout = 7, command = rec$path)
  cmd <- launch_remote(1, remote = cfg)
  expect_true(wait_for(function() file.exists(rec$args)))
  args <- readLines(rec$args)
  expect_identical(args, c("-o", "ConnectTimeout=7", "-fTp", "2222", "user@example-host", unclass(cmd)))
  # [EXT] 4.2: the host's secret is in the command's environment, never in
  # its arguments
  expect_identical(readLines(rec$secret, warn = FALSE), host_secret())
})

test_that("[EXT] a real ssh gets the secret on standard input, and runs without -f", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  # a stand-in named ssh: the secret goes to ssh's standard input, for the
  # remote command; -f (which implies -n) is taken out of the flags
  rec <- recorder_script(stdin = TRUE, name = "ssh")
  cfg <- ssh_config("ssh://user@example-host:2222", timeout = 7, command = rec$path)
  cmd <- launch_remote(1, remote = cfg)
  expect_true(wait_for(function() file.exists(rec$args)))
  expect_identical(readLines(rec$args), c("-o", "ConnectTimeout=7", "-Tp", "2222", "user@example-host", unclass(cmd)))
  expect_identical(readLines(rec$stdin), host_secret())
  expect_identical(mirai:::.ssh_without_fork(c("-o ConnectTimeout=10 -fTp 22", "-R 1:127.0.0.1:1 -f -p 2", "-Fcfg -i idf", "-vf", "host")),
                   c("-o ConnectTimeout=10 -Tp 22", "-R 1:127.0.0.1:1  -p 2", "-Fcfg -i idf", "-v", "host"))
})

test_that("commands are run: quote = FALSE puts the command in as is", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  rec <- recorder_script()
  cfg <- remote_config(command = rec$path, args = c("first", "."), quote = FALSE)
  cmd <- launch_remote(1, remote = cfg)
  expect_true(wait_for(function() file.exists(rec$args)))
  # the shell splits the command text into its words
  args <- readLines(rec$args)
  expect_identical(args, c("first", "Rscript", "-e", sprintf("mirai::daemon(\"%s\")", nextget("url"))))
  expect_identical(readLines(rec$secret, warn = FALSE), host_secret())
})

test_that("commands are run: an ssh tunnel prefixes -R port:127.0.0.1:port", {
  rec <- recorder_script()
  spec_daemons(url = "tcp://127.0.0.1:0")
  port <- url_port(nextget("url"))
  cfg <- ssh_config("ssh://tunnel-host", tunnel = TRUE, command = rec$path)
  launch_remote(1, remote = cfg)
  expect_true(wait_for(function() file.exists(rec$args)))
  args <- readLines(rec$args)
  expect_identical(args, c("-R", sprintf("%d:127.0.0.1:%d", port, port), "-o", "ConnectTimeout=10", "-fTp", "22", "tunnel-host",
                                 sprintf("Rscript -e 'mirai::daemon(\"%s\")'", nextget("url"))))
  daemons(0)
  spec_daemons(url = "tcp://localhost:0")
  e <- catch_cnd(launch_remote(1, remote = cfg))
  expect_identical(conditionMessage(e), "SSH tunnelling requires daemons `url` hostname to be `127.0.0.1`")
})

test_that("commands are run: cluster_config submits a here-document job script", {
  spec_daemons(url = "tcp://127.0.0.1:0")
  rec <- recorder_script(stdin = TRUE)
  cfg <- cluster_config(command = rec$path, options = "  #SBATCH --job-name=x\n\tmodule load R")
  cmd <- launch_remote(1, remote = cfg)
  expect_true(wait_for(function() file.exists(rec$args)))
  expect_identical(readLines(rec$stdin),
                   c("#!/bin/sh", "#SBATCH --job-name=x", "module load R", unclass(cmd)))
  expect_identical(readLines(rec$args), "") # none
  # [EXT] 4.2: the secret reaches the scheduler in its environment (sbatch
  # and bsub pass it on to the job); qsub is asked to pass it on
  expect_identical(readLines(rec$secret, warn = FALSE), host_secret())
  qsub <- recorder_script(stdin = TRUE, name = "qsub")
  launch_remote(1, remote = cluster_config(command = qsub$path))
  expect_true(wait_for(function() file.exists(qsub$args)))
  expect_identical(readLines(qsub$args), c("-v", "MIRAI_SECRET"))
  expect_identical(readLines(qsub$secret, warn = FALSE), host_secret())
})

test_that("a configured command really launches daemons (and the commands are returned)", {
  spec_daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE)
  cfg <- remote_config(command = "sh", args = c("-c", "."), rscript = rscript(), quote = TRUE)
  v <- withVisible(launch_remote(2, remote = cfg))
  expect_true(v$visible)
  cmds <- v$value
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_length(cmds, 2L)
  expect_true(wait_conn(2, timeout = 20))
})

test_that("remote_config(): the list and its validation", {
  expect_identical(remote_config(), list(command = NULL, args = c("", "."), rscript = "Rscript", quote = FALSE, tunnel = FALSE))
  expect_identical(names(remote_config()), c("command", "args", "rscript", "quote", "tunnel"))
  expect_identical(
    remote_config("ssh", args = list(c("-p 1", "h", ".")), rscript = "/R", quote = TRUE),
    list(command = "ssh", args = list(c("-p 1", "h", ".")), rscript = "/R", quote = TRUE, tunnel = FALSE)
  )
  msg <- "`.` must be an element of the character vector(s) supplied to `args`"
  e <- catch_cnd(remote_config(args = "x"))
  expect_identical(conditionMessage(e), msg)
  expect_null(conditionCall(e))
  e <- catch_cnd(remote_config(args = list(c("a", "."), "b")))
  expect_identical(conditionMessage(e), msg)
  expect_visible(remote_config())
})

test_that("ssh_config(): args triplets, default port 22", {
  cfg <- ssh_config(c("ssh://u@h1:2222", "ssh://h2"), timeout = 5)
  expect_identical(cfg, list(
    command = "ssh",
    args = list(c("-o ConnectTimeout=5 -fTp 2222", "u@h1", "."), c("-o ConnectTimeout=5 -fTp 22", "h2", ".")),
    rscript = "Rscript", quote = TRUE, tunnel = FALSE
  ))
  cfg <- ssh_config("ssh://h3", tunnel = TRUE, command = "/usr/bin/ssh", rscript = "/R/Rscript")
  expect_identical(cfg, list(
    command = "/usr/bin/ssh", args = list(c("-o ConnectTimeout=10 -fTp 22", "h3", ".")),
    rscript = "/R/Rscript", quote = TRUE, tunnel = TRUE
  ))
  expect_identical(ssh_config("ssh://h", tunnel = "yes")$tunnel, FALSE)
  expect_visible(ssh_config("ssh://h"))
})

test_that("cluster_config(): four elements, quote NULL kept, options stripped", {
  cfg <- cluster_config()
  expect_identical(names(cfg), c("command", "args", "rscript", "quote"))
  expect_identical(cfg, list(command = "/bin/sh", args = c("sbatch<<'EOF'\n#!/bin/sh\n\n", ".", "\nEOF"),
                             rscript = "Rscript", quote = NULL))
  cfg <- cluster_config(c("qsub", "ignored"), options = "  #$ -cwd\n\t #$ -j y\nmodule load R", rscript = "/R")
  expect_identical(cfg$args, c("qsub<<'EOF'\n#!/bin/sh\n#$ -cwd\n#$ -j y\nmodule load R\n", ".", "\nEOF"))
  expect_identical(cfg$rscript, "/R")
  expect_identical(cluster_config("bsub")$args[1L], "bsub<<'EOF'\n#!/bin/sh\n\n")
})

test_that("http_config(): eight elements, defaults are functions", {
  cfg <- http_config()
  expect_identical(names(cfg), c("type", "url", "method", "headers", "data", "dots", "cookie", "token"))
  expect_identical(cfg$type, "http")
  expect_identical(cfg$method, "POST")
  expect_true(is.function(cfg$url))
  expect_true(is.function(cfg$headers))
  expect_true(is.function(cfg$data))
  expect_identical(cfg$dots, list())
  expect_null(cfg$cookie)
  expect_null(cfg$token)
  cfg <- http_config(url = "http://x/api", method = "PUT", headers = c(a = "b"), data = "{%s}",
                     cpus = 2, cookie = "c", token = "t")
  expect_identical(cfg, list(type = "http", url = "http://x/api", method = "PUT", headers = c(a = "b"),
                             data = "{%s}", dots = list(cpus = 2), cookie = "c", token = "t"))
})

test_that("http_config() default functions read the Posit Workbench environment", {
  old <- Sys.getenv(c("RS_SERVER_ADDRESS", "RS_SESSION_RPC_COOKIE"), unset = NA)
  spec_defer(for (n in names(old)) if (is.na(old[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, as.list(old[n])))
  Sys.setenv(RS_SERVER_ADDRESS = "http://pwb.example", RS_SESSION_RPC_COOKIE = "cookie123")
  cfg <- http_config()
  expect_identical(cfg$url(), "http://pwb.example/api/launch_job")
  expect_identical(cfg$headers(), c(Cookie = "cookie123", "X-RS-Session-Server-RPC-Cookie" = "cookie123"))
  Sys.unsetenv(c("RS_SERVER_ADDRESS", "RS_SESSION_RPC_COOKIE"))
  spec_daemons(url = "tcp://127.0.0.1:0")
  e <- catch_cnd(launch_remote(1, remote = http_config()))
  if (requireNamespace("secretbase", quietly = TRUE)) {
    expect_identical(conditionMessage(e), "can only be used from Posit Workbench")
  } else {
    expect_identical(conditionMessage(e), "the secretbase package is required, try: `install.packages('secretbase')`")
  }
})

test_that("http_config() launches: one request per daemon, JSON-escaped call, invisible responses", {
  port <- url_port(free_tcp_url())
  reqfile <- tempfile("requests", fileext = ".rds")
  ready <- tempfile("ready")
  server <- r_process(sprintf(
    paste(
      "srv <- serverSocket(%d); file.create(%s); reqs <- list();",
      "for (i in 1:2) {",
      "  con <- socketAccept(srv, blocking = TRUE, open = 'r+b', timeout = 30);",
      "  head <- character(); repeat { l <- readLines(con, n = 1); if (!length(l) || l == '' || l == '\\r') break; head <- c(head, sub('\\r$', '', l)) };",
      "  len <- as.integer(sub('^[^:]*: *', '', grep('^content-length:', head, ignore.case = TRUE, value = TRUE)));",
      "  body <- if (length(len) && len > 0) rawToChar(readBin(con, 'raw', len)) else '';",
      "  reqs[[i]] <- list(head = head, body = body);",
      "  writeLines('HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok', con, sep = '');",
      "  flush(con); close(con) };",
      "saveRDS(reqs, %s)"
    ),
    port, deparse(ready), deparse(reqfile)
  ))
  spec_defer(kill_process(server))
  spec_daemons(url = "tls+tcp://127.0.0.1:0", dispatcher = FALSE, seed = 1L)
  cfg <- http_config(
    url = sprintf("http://127.0.0.1:%d/launch", port),
    method = "POST",
    headers = function() c("X-Spec" = "yes"),
    data = function() "{\"cmd\":\"%s\"}",
    token = "tok",
    cookie = function() "ck"
  )
  expect_true(wait_for(function() file.exists(ready), timeout = 20))
  expect_invisible(res <- launch_remote(2, remote = cfg))
  expect_type(res, "list")
  expect_length(res, 2L)
  expect_true(wait_for(function() file.exists(reqfile), timeout = 20))
  reqs <- readRDS(reqfile)
  call <- sprintf("mirai::daemon(\"%s\",dispatcher=FALSE,tlscert=c(\"%s\",\"\"),rs=c())", nextget("url"), nextget("tls")[1L])
  esc <- gsub("\n", "\\n", gsub("\"", "\\\"", gsub("\\", "\\\\", call, fixed = TRUE), fixed = TRUE), fixed = TRUE)
  bodies <- vapply(reqs, `[[`, "", "body")
  expect_true(sprintf("{\"cmd\":\"%s\"}", esc) %in% bodies)
  heads <- unlist(lapply(reqs, `[[`, "head"))
  expect_true(any(grepl("^POST /launch HTTP", heads)))
  expect_true(any(grepl("^X-Spec: yes$", heads, ignore.case = TRUE)))
  expect_true(any(grepl("^Authorization: Bearer tok$", heads, ignore.case = TRUE)))
  expect_true(any(grepl("^Cookie: ck$", heads, ignore.case = TRUE)))
})
