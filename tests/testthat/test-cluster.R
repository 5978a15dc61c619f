# Clusters for base parallel (SPEC 5.2): make_cluster(), stop_cluster(), the
# sendData / recvData / recvOneData methods, and foreach through doParallel.

# A cluster of `n` local nodes, stopped when the calling test exits.
local_cluster <- function(n = 2L, ..., frame = parent.frame()) {
  cl <- make_cluster(n, ...)
  spec_defer(try(stop_cluster(cl), silent = TRUE), frame = frame)
  cl
}

# The number in a cluster ID `k`.
id_number <- function(cl) as.integer(gsub("`", "", attr(cl, "id"), fixed = TRUE))

# Run `code` (R source text, whose value is saved) in a fresh R process
# with this session's library paths and return its value; the process is
# killed, and the test fails, if it takes more than `timeout` seconds, so a
# hanging receive cannot hang the suite.
run_bounded <- function(code, timeout = 90) {
  out <- tempfile(fileext = ".rds")
  script <- tempfile(fileext = ".R")
  writeLines(c(sprintf(".libPaths(%s)", paste(deparse(.libPaths()), collapse = "")),
               sprintf("Sys.setenv(MIRAI_SECRET = %s)", deparse(TEST_SECRET)),
               "library(mirai)",
               sprintf("saveRDS(local({\n%s\n}), %s)", code, deparse(out))), script)
  p <- r_process(sprintf("source(%s)", deparse(script)), stdout = NULL, stderr = "|")
  on.exit(kill_process(p), add = TRUE)
  p$wait(timeout * 1000)
  if (p$is_alive()) stop(sprintf("the R process did not finish within %d seconds", timeout))
  if (!file.exists(out)) stop(paste(c("the R process failed:", p$read_all_error_lines()), collapse = "\n"))
  readRDS(out)
}

test_that("make_cluster() returns a miraiCluster of miraiNode, printed as specified", {
  cl <- local_cluster(2L)
  id <- attr(cl, "id")
  expect_match(id, "^`[0-9]+`$")
  expect_identical(attributes(cl), list(class = c("miraiCluster", "cluster"), id = id))
  expect_length(cl, 2L)
  for (i in 1:2) {
    node <- cl[[i]]
    expect_true(is.environment(node))
    expect_identical(class(node), "miraiNode")
    expect_identical(attr(node, "node"), i)
    expect_identical(attr(node, "id"), id)
  }
  expect_identical(capture.output(print(cl)),
                   sprintf("< miraiCluster | ID: %s nodes: 2 active: TRUE >", id))
  expect_identical(capture.output(print(cl[[2L]])),
                   sprintf("< miraiNode | node: 2 cluster ID: %s >", id))
  capture.output(v <- withVisible(print(cl)))
  expect_false(v$visible)
  expect_identical(v$value, cl)
  capture.output(v <- withVisible(print(cl[[1L]])))
  expect_false(v$visible)
  expect_identical(v$value, cl[[1L]])
  # its nodes are connected once make_cluster() returns
  expect_identical(status(cl)$connections, 2L)
  # `[` gives a plain list of the same nodes
  sub <- cl[2L]
  expect_null(attributes(sub))
  expect_type(sub, "list")
  expect_identical(sub[[1L]], cl[[2L]])
  expect_identical(length(cl[1:2]), 2L)
})

test_that("cluster IDs count the profile names ever created, and are never reused", {
  cl1 <- make_cluster(1L)
  k <- id_number(cl1)
  stop_cluster(cl1)
  cl2 <- local_cluster(1L)
  expect_identical(id_number(cl2), k + 1L)
  stop_cluster(cl2)
  # a new profile name counts once, however often it is set
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, .compute = "cluster-id-probe")
  daemons(0, .compute = "cluster-id-probe")
  daemons(url = "tcp://127.0.0.1:0", dispatcher = FALSE, .compute = "cluster-id-probe")
  daemons(0, .compute = "cluster-id-probe")
  cl3 <- local_cluster(1L)
  expect_identical(id_number(cl3), k + 3L)
  # the stopped clusters stay stopped: a new cluster took none of their IDs
  expect_false(daemons_set(attr(cl1, "id")))
  expect_output(print(cl1), "active: FALSE")
})

test_that("make_cluster() validates `n`", {
  expect_error(make_cluster("2"), "`n` must be numeric, did you mean to provide `url`?", fixed = TRUE)
  expect_error(make_cluster(NA), "`n` must be numeric, did you mean to provide `url`?", fixed = TRUE)
  expect_error(make_cluster(0), "`n` must be 1 or greater", fixed = TRUE)
  expect_error(make_cluster(-2), "`n` must be 1 or greater", fixed = TRUE)
  expect_error(make_cluster(NA_real_), "`n` must be 1 or greater", fixed = TRUE)
  expect_error(make_cluster(), "missing")
  # the cluster's own settings cannot be overridden
  expect_error(make_cluster(1, dispatcher = TRUE), "matched by multiple actual arguments")
  expect_error(make_cluster(1, cleanup = TRUE), "matched by multiple actual arguments")
})

test_that("make_cluster() passes `...` to daemons(), after dispatcher = FALSE and before cleanup = FALSE", {
  cl <- local_cluster(2L, maxtasks = 1000)
  cmds <- launch_remote(cl)
  expect_s3_class(cmds, "miraiLaunchCmd")
  expect_length(cmds, 2L)
  url <- status(cl)$daemons
  expect_true(all(startsWith(cmds, sprintf(
    "Rscript -e 'mirai::daemon(\"%s\",dispatcher=FALSE,maxtasks=1000,cleanup=FALSE,rs=c(", url))))
  one <- launch_remote(cl[[1L]])
  expect_length(one, 1L)
  expect_match(one, "cleanup=FALSE", fixed = TRUE)
  out <- capture.output(print(cmds))
  expect_identical(out[c(1L, 3L, 4L, 6L)], c("[1]", "", "[2]", ""))
  expect_identical(out[2L], sprintf("MIRAI_SECRET=%s %s", TEST_SECRET, cmds[[1L]]))
})

test_that("status(cl) describes the cluster's profile; stopping makes it inactive", {
  cl <- local_cluster(2L)
  st <- status(cl)
  expect_identical(names(st)[1:2], c("connections", "daemons"))
  expect_identical(st$connections, 2L)
  expect_type(st$daemons, "character")
  expect_null(st$mirai) # no dispatcher
  expect_identical(status(.compute = attr(cl, "id")), st)
  expect_null(stop_cluster(cl))
  expect_invisible(stop_cluster(cl))
  expect_identical(status(cl), list(connections = 0L, daemons = 0L))
  expect_identical(capture.output(print(cl)),
                   sprintf("< miraiCluster | ID: %s nodes: 2 active: FALSE >", attr(cl, "id")))
  expect_error(stop_cluster(list()), "`cl` must be a 'miraiCluster'", fixed = TRUE)
})

test_that("stopCluster() and stop_cluster() leave the cluster refusing every call", {
  cl <- local_cluster(2L)
  pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  expect_true(all(vapply(pids, pid_alive, logical(1L))))
  expect_null(parallel::stopCluster(cl))
  expect_error(parallel::clusterCall(cl, Sys.getpid), "cluster is no longer active", fixed = TRUE)
  expect_error(parallel::parLapply(cl, 1:4, identity), "cluster is no longer active", fixed = TRUE)
  expect_error(parallel::clusterEvalQ(cl, 1), "cluster is no longer active", fixed = TRUE)
  # its daemons exit
  expect_true(wait_for(function() !any(vapply(pids, pid_alive, logical(1L))), timeout = 10))

  cl2 <- local_cluster(1L)
  expect_identical(parallel::clusterEvalQ(cl2, 1 + 1), list(2))
  stop_cluster(cl2)
  expect_error(parallel::clusterApply(cl2, 1, identity), "cluster is no longer active", fixed = TRUE)
  expect_error(parallel::parSapplyLB(cl2, 1:3, identity), "cluster is no longer active", fixed = TRUE)
})

test_that("the parallel functions run on the cluster's nodes", {
  cl <- local_cluster(2L)
  pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  expect_length(unique(pids), 2L)
  expect_false(Sys.getpid() %in% pids)
  expect_identical(parallel::clusterCall(cl, function(a, b) a + b, 1, b = 2), list(3, 3))
  # objects given to the nodes persist (no cleanup between tasks)
  expect_identical(parallel::clusterEvalQ(cl, {
    persistent <- 40L
    NULL
  }), list(NULL, NULL))
  expect_identical(parallel::clusterEvalQ(cl, persistent + 2L), list(42L, 42L))
  shared <- c(a = 1, b = 2)
  offset <- 100
  parallel::clusterExport(cl, c("shared", "offset"), envir = environment())
  expect_identical(parallel::clusterEvalQ(cl, sum(shared) + offset), list(103, 103))
  expect_identical(parallel::parLapply(cl, 1:9, function(x) x * offset), as.list((1:9) * 100))
  expect_identical(parallel::parSapply(cl, c(a = 1, b = 2, c = 3), function(x) x^2),
                   c(a = 1, b = 4, c = 9))
  m <- matrix(1:6, nrow = 2)
  expect_identical(parallel::parApply(cl, m, 1, sum), apply(m, 1, sum))
  expect_identical(parallel::parApply(cl, m, 2, function(col) col * 2L), apply(m, 2, function(col) col * 2L))
  expect_identical(parallel::clusterMap(cl, function(x, y) x + y, 1:5, 6:10),
                   as.list((1:5) + (6:10)))
  expect_identical(parallel::clusterMap(cl, rep, 1:3, 3:1, SIMPLIFY = TRUE, USE.NAMES = FALSE),
                   list(rep(1L, 3L), rep(2L, 2L), 3L))
  expect_identical(parallel::clusterApply(cl, 1:5, function(x, k) x * k, k = 3L), as.list((1:5) * 3L))
  # each node runs its share: with 2 nodes both pids answer a static apply
  seen <- unlist(parallel::clusterApply(cl, 1:2, function(i) Sys.getpid()))
  expect_setequal(seen, pids)
  # packages loaded on the nodes stay loaded
  expect_identical(unlist(parallel::clusterEvalQ(cl, {
    library(tools)
    "tools" %in% .packages()
  })), c(TRUE, TRUE))
})

test_that("recvData() returns the node's mirai; parallel reads its value", {
  cl <- local_cluster(1L)
  parallel:::sendCall(cl[[1L]], function(x) x + 1, list(41))
  m <- parallel:::recvData(cl[[1L]])
  expect_true(is_mirai(m))
  expect_identical(m$value, 42)
  expect_identical(parallel:::recvResult(cl[[1L]]), 42)
})

test_that("load-balanced functions return every result in input order with many more tasks than nodes", {
  res <- run_bounded('
    cl <- make_cluster(2)
    on.exit(stop_cluster(cl))
    pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
    list(
      lb = parallel::parLapplyLB(cl, 1:50, function(x) x * 2L),
      lb_chunked = parallel::parLapplyLB(cl, 1:50, function(x) x + 1L, chunk.size = 3),
      apply_lb = parallel::clusterApplyLB(cl, 1:50, function(x) {
        Sys.sleep(if (x %% 7 == 0) 0.05 else 0)
        c(x = x, pid = Sys.getpid())
      }),
      sapply_lb = parallel::parSapplyLB(cl, setNames(1:30, paste0("e", 1:30)), function(x) -x),
      six = parallel::clusterApplyLB(cl, 1:6, function(x) x^2),
      error = tryCatch(parallel::clusterApplyLB(cl, 1:20, function(i) if (i == 13L) stop("late ", i) else i),
                       error = conditionMessage),
      errors = tryCatch(parallel::parSapplyLB(cl, 1:20, function(i) if (i > 15L) stop("late ", i) else i,
                                              chunk.size = 1),
                        error = conditionMessage),
      after = parallel::parSapplyLB(cl, 1:20, function(i) i),
      pids = pids
    )
  ')
  expect_identical(res$lb, as.list((1:50) * 2L))
  expect_identical(res$lb_chunked, as.list((1:50) + 1L))
  expect_identical(vapply(res$apply_lb, `[[`, numeric(1L), "x"), as.numeric(1:50))
  expect_true(all(vapply(res$apply_lb, `[[`, numeric(1L), "pid") %in% res$pids))
  expect_identical(res$sapply_lb, setNames(-(1:30), paste0("e", 1:30)))
  expect_identical(res$six, as.list((1:6)^2))
  expect_match(res$error, "^one node produced an error: Error in .*: late 13$")
  expect_match(res$errors, "^5 nodes produced errors; first error: Error in .*: late 16$")
  expect_identical(res$after, 1:20)
})

test_that("recvOneData() hands out each tagged completion once, lowest node first", {
  cl <- local_cluster(2L)
  node_send <- function(i, value, tag)
    parallel:::sendCall(cl[[i]], function(v) v, list(value), tag = tag)
  # both resolved before the first receive: the lower node comes first
  node_send(1L, "one", 11L)
  node_send(2L, "two", 22L)
  call_mirai(list(cl[[1L]]$mirai, cl[[2L]]$mirai))
  a <- parallel:::recvOneData(cl)
  expect_identical(a$node, 1L)
  expect_identical(a$value$value, "one")
  expect_identical(a$value$tag, 11L)
  expect_false(is_mirai(a$value)) # consumed
  b <- parallel:::recvOneData(cl)
  expect_identical(b$node, 2L)
  expect_identical(b$value$value, "two")
  expect_identical(b$value$tag, 22L)
  # nothing left: an error, not a wait
  expect_error(parallel:::recvOneData(cl), "no load-balanced task")
  # a node still busy does not hold back one that has finished: node 1's
  # task finishes only once the file exists, made after node 2 is received
  go <- tempfile()
  parallel:::sendCall(cl[[1L]], function(go) {
    deadline <- Sys.time() + 30
    while (!file.exists(go) && Sys.time() < deadline) Sys.sleep(0.02)
    "slow"
  }, list(go), tag = 1L)
  node_send(2L, "fast", 2L)
  first <- parallel:::recvOneResult(cl)
  expect_identical(first$node, 2L)
  expect_identical(first$value, "fast")
  expect_identical(first$tag, 2L)
  file.create(go)
  second <- parallel:::recvOneResult(cl)
  expect_identical(second$node, 1L)
  expect_identical(second$value, "slow")
  expect_identical(second$tag, 1L)
})

test_that("clusterSetRNGStream() makes the nodes' draws reproducible", {
  cl <- local_cluster(2L)
  parallel::clusterSetRNGStream(cl, 123)
  first <- unlist(parallel::clusterCall(cl, runif, 3))
  more <- parallel::parSapply(cl, 1:4, function(i) rnorm(1))
  parallel::clusterSetRNGStream(cl, 123)
  again <- unlist(parallel::clusterCall(cl, runif, 3))
  expect_identical(sort(again), sort(first))
  expect_identical(parallel::parSapply(cl, 1:4, function(i) rnorm(1)), more)
  # the nodes draw from the streams parallel computes for seed 123
  expected <- with_rng_preserved({
    set.seed(123, kind = "L'Ecuyer-CMRG")
    s1 <- .Random.seed
    s2 <- parallel::nextRNGStream(s1)
    draw <- function(s) {
      assign(".Random.seed", s, envir = globalenv())
      runif(3)
    }
    c(draw(s1), draw(s2))
  })
  expect_identical(sort(first), sort(expected))
  # another seed gives other draws
  parallel::clusterSetRNGStream(cl, 124)
  expect_false(any(unlist(parallel::clusterCall(cl, runif, 3)) %in% first))
})

test_that("remote errors arrive as miraiError and checkForRemoteErrors() reports them", {
  cl <- local_cluster(2L)
  bad <- function(i) if (i == 2L) stop("bad ", i) else i
  err <- tryCatch(parallel::clusterApply(cl, 1:2, bad), error = identity)
  expect_match(conditionMessage(err), "^one node produced an error: Error in .*: bad 2$")
  err <- tryCatch(parallel::clusterEvalQ(cl, stop("boom")), error = identity)
  expect_match(conditionMessage(err), "^2 nodes produced errors; first error: Error.*: boom$")
  # the values themselves
  parallel:::sendCall(cl[[1L]], bad, list(2L))
  v <- parallel:::recvResult(cl[[1L]])
  expect_s3_class(v, "miraiError")
  expect_s3_class(v, "try-error")
  expect_identical(conditionMessage(v), "bad 2")
  expect_identical(
    tryCatch(parallel:::checkForRemoteErrors(list(1, v)), error = conditionMessage),
    paste0("one node produced an error: ", v)
  )
  # the cluster carries on
  expect_identical(parallel::parSapply(cl, 1:4, function(i) i), 1:4)
})

test_that("a node killed mid-task gives errorValue 19; the others carry on", {
  cl <- local_cluster(2L)
  f <- tempfile()
  parallel:::sendCall(cl[[1L]], function(f) {
    writeLines(as.character(Sys.getpid()), f)
    Sys.sleep(30)
    "never"
  }, list(f))
  expect_true(wait_for(function() file.exists(f) && length(readLines(f, warn = FALSE)) == 1L, timeout = 15))
  victim <- as.integer(readLines(f))
  tools::pskill(victim, tools::SIGKILL)
  v <- parallel:::recvResult(cl[[1L]])
  expect_s3_class(v, "errorValue")
  expect_s3_class(v, "try-error")
  expect_identical(unclass(v), 19L)
  expect_error(parallel:::checkForRemoteErrors(list(v)), "one node produced an error: 19", fixed = TRUE)
  expect_true(wait_conn(1L, timeout = 10, .compute = attr(cl, "id")))
  # the surviving daemon serves both nodes
  expect_identical(parallel::parLapply(cl, 1:4, function(x) x + 1), as.list(2:5 + 0))
  alive <- unique(unlist(parallel::clusterCall(cl, Sys.getpid)))
  expect_length(alive, 1L)
  expect_false(victim %in% alive)
})

test_that("make_cluster(url =) without `remote` prints the deployment commands; a node started with one joins", {
  skip_if_not_installed("processx")
  out <- capture.output(v <- withVisible(make_cluster(url = "tcp://127.0.0.1:0")))
  cl <- v$value
  spec_defer(try(stop_cluster(cl), silent = TRUE))
  expect_true(v$visible)
  expect_s3_class(cl, "miraiCluster")
  expect_length(cl, 1L) # n defaults to 1
  url <- status(cl)$daemons
  expect_match(url, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  expect_false(endsWith(url, ":0"))
  expect_identical(out[1:3], c("Shell commands for deployment on nodes:", "", "[1]"))
  expect_identical(out[5L], "")
  expect_length(out, 5L)
  cmd <- out[4L]
  expect_identical(cmd, sprintf(
    "MIRAI_SECRET=%s Rscript -e 'mirai::daemon(\"%s\",dispatcher=FALSE,cleanup=FALSE,rs=c(%s))'",
    TEST_SECRET, url, paste(cmd_rs(cmd), collapse = ",")))
  expect_identical(status(cl)$connections, 0L) # nothing was started
  # run the printed command, as on a node (with this R's Rscript)
  p <- processx::process$new("sh", c("-c", sub("Rscript", rscript(), cmd, fixed = TRUE)),
                             env = c("current", MIRAI_SECRET = ""), cleanup = TRUE, cleanup_tree = TRUE)
  on.exit(kill_process(p), add = TRUE)
  expect_true(wait_conn(1L, timeout = 20, .compute = attr(cl, "id")))
  pid <- parallel::clusterCall(cl, Sys.getpid)[[1L]]
  expect_false(pid == Sys.getpid())
  expect_identical(parallel::parSapply(cl, 1:3, function(x) x * 10), c(10, 20, 30))

  # several nodes: one command each, launched here with launch_local()
  out2 <- capture.output(cl2 <- make_cluster(2, url = "tcp://127.0.0.1:0"))
  spec_defer(try(stop_cluster(cl2), silent = TRUE))
  expect_length(cl2, 2L)
  expect_identical(out2[c(1L, 3L, 6L)], c("Shell commands for deployment on nodes:", "[1]", "[2]"))
  launch_local(2, .compute = attr(cl2, "id"))
  expect_true(wait_conn(2L, timeout = 20, .compute = attr(cl2, "id")))
  expect_length(unique(unlist(parallel::clusterCall(cl2, Sys.getpid))), 2L)
})

test_that("make_cluster(url =, remote =) launches the nodes through the configuration", {
  script <- tempfile("launch.node.", fileext = ".sh")
  writeLines('exec sh -c "$1"', script)
  one <- remote_config(command = "sh", args = c(script, "."), quote = TRUE)
  expect_silent(cl <- make_cluster(1, url = "tcp://127.0.0.1:0", remote = one))
  spec_defer(try(stop_cluster(cl), silent = TRUE))
  expect_length(cl, 1L)
  expect_true(wait_conn(1L, timeout = 20, .compute = attr(cl, "id")))
  expect_identical(parallel::clusterEvalQ(cl, 6 * 7), list(42))
  stop_cluster(cl)
  # a list of `args`: one node per element
  two <- remote_config(command = "sh", args = list(c(script, "."), c(script, ".")), quote = TRUE)
  cl2 <- make_cluster(2, url = "tcp://127.0.0.1:0", remote = two)
  spec_defer(try(stop_cluster(cl2), silent = TRUE))
  expect_length(cl2, 2L)
  expect_true(wait_conn(2L, timeout = 20, .compute = attr(cl2, "id")))
  expect_length(unique(unlist(parallel::clusterCall(cl2, Sys.getpid))), 2L)
  # `n` must be given with `remote`
  expect_error(make_cluster(url = "tcp://127.0.0.1:0", remote = one))
})

test_that("foreach %dopar% runs on the cluster through doParallel", {
  skip_if_not_installed("foreach")
  skip_if_not_installed("doParallel")
  res <- run_bounded('
    library(foreach)
    cl <- make_cluster(2)
    on.exit({ foreach::registerDoSEQ(); stop_cluster(cl) })
    doParallel::registerDoParallel(cl)
    pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
    k <- 10
    list(
      workers = foreach::getDoParWorkers(),
      squares = foreach(i = 1:40, .combine = c) %dopar% i^2,
      listed = foreach(i = 1:12) %dopar% (i + k),
      bound = foreach(i = 1:5, .combine = rbind) %dopar% c(i, -i),
      summed = foreach(i = 1:25, .combine = "+") %dopar% i,
      where = unique(foreach(i = 1:20, .combine = c) %dopar% Sys.getpid()),
      stop = tryCatch(foreach(i = 1:6) %dopar% if (i == 4) stop("four") else i,
                      error = conditionMessage),
      pass = foreach(i = 1:6, .errorhandling = "pass") %dopar% if (i == 4) stop("four") else i,
      remove = foreach(i = 1:6, .combine = c, .errorhandling = "remove") %dopar%
        if (i %% 2) stop("odd") else i,
      pids = pids
    )
  ')
  expect_identical(res$workers, 2L)
  expect_identical(res$squares, (1:40)^2)
  expect_identical(res$listed, as.list((1:12) + 10))
  expect_equal(unname(res$bound), cbind(1:5, -(1:5)))
  expect_identical(res$summed, sum(1:25))
  expect_true(all(res$where %in% res$pids))
  expect_identical(res$stop, "task 4 failed - \"four\"")
  expect_length(res$pass, 6L)
  expect_s3_class(res$pass[[4L]], "error")
  expect_identical(conditionMessage(res$pass[[4L]]), "four")
  expect_identical(res$pass[-4L], as.list(c(1:3, 5:6)))
  expect_identical(res$remove, c(2L, 4L, 6L))
})
