#' Make a mirai Cluster
#'
#' `make_cluster()` creates a cluster of type 'miraiCluster', usable as a
#' cluster with every function of the base `parallel` package, such as
#' [parallel::parLapply()], [parallel::clusterApplyLB()] or
#' [parallel::clusterSetRNGStream()], and with `foreach` through
#' `doParallel::registerDoParallel()`. Its nodes are mirai daemons of a
#' compute profile of its own, set without dispatcher and with
#' `cleanup = FALSE`, so objects a node is given (by
#' [parallel::clusterExport()], say) and its random-number state persist
#' from one task to the next. `stop_cluster()` stops it.
#'
#' @param n integer number of nodes (launched on this machine when `url`
#'   is `NULL`, and ready when `make_cluster()` returns).
#' @param url (optional) a URL for the nodes to dial in at, such as
#'   `host_url()` or `"tcp://10.75.32.70:5555"`: nodes are then started on
#'   other machines, through `remote` or by hand.
#' @param remote (optional, with `url`) a launch configuration from
#'   [remote_config()] or [ssh_config()] that starts the nodes. Without it,
#'   the shell commands that start them are printed (`n` defaults to 1),
#'   to run by hand on the machines that are to be nodes.
#' @param ... further arguments for [daemons()], such as daemon settings
#'   (`dispatcher` and `cleanup` are set by the cluster and cannot be
#'   given).
#'
#' @details With `remote`, the cluster has as many nodes as the
#'   configuration has remotes (the length of its `args` when that is a
#'   list, as from [ssh_config()] with several remotes), else one.
#'
#'   Nodes are the daemons of one compute profile, named by the cluster's
#'   ID: [status()] and [launch_remote()] also accept the cluster (or, for
#'   [launch_remote()], one of its nodes). A node that dies while running a
#'   task gives an 'errorValue' 19 (connection reset) for that task;
#'   errors in evaluation arrive as 'miraiError' values, which are
#'   'try-error' values, so parallel reports them as errors of the nodes.
#'
#'   Load-balanced functions ([parallel::parLapplyLB()],
#'   [parallel::clusterApplyLB()], ...) hand each node a new task as soon
#'   as its last one returns.
#'
#' @return `make_cluster()`: a 'miraiCluster' (a list of 'miraiNode',
#'   with attribute `id`). `stop_cluster()`: invisible `NULL`.
#'
#' @examples
#' \donttest{
#' cl <- make_cluster(2)
#' cl
#' cl[[1L]]
#' parallel::parLapply(cl, 1:4, function(x) x^2)
#' parallel::clusterSetRNGStream(cl, 123)
#' parallel::parSapplyLB(cl, 1:6, function(i) runif(1))
#' status(cl)
#' stop_cluster(cl)
#' }
#' @export
make_cluster <- function(n, url = NULL, remote = NULL, ...) {
  .cluster_settings(dispatcher = FALSE, ..., cleanup = FALSE)
  id <- .cluster_id()
  if (is.null(url)) {
    if (!is.numeric(n)) stop(.messages$numeric_n)
    n <- .cluster_size(n)
    daemons(n, dispatcher = FALSE, ..., cleanup = FALSE, .compute = id)
  } else if (is.null(remote)) {
    if (missing(n)) n <- 1L
    if (!is.numeric(n)) stop(.messages$numeric_n)
    n <- .cluster_size(n)
    daemons(n, url = url, dispatcher = FALSE, ..., cleanup = FALSE, .compute = id)
    cat("Shell commands for deployment on nodes:\n\n", file = stdout())
    print(launch_remote(n, .compute = id))
  } else {
    daemons(n, url = url, remote = remote, dispatcher = FALSE, ..., cleanup = FALSE, .compute = id)
    n <- if (is.list(remote[["args"]])) length(remote[["args"]]) else 1L
  }
  nodes <- lapply(seq_len(n), function(i)
    structure(new.env(parent = emptyenv()), class = "miraiNode", node = i, id = id))
  structure(nodes, class = c("miraiCluster", "cluster"), id = id)
}

#' @rdname make_cluster
#' @param cl a 'miraiCluster'.
#' @export
stop_cluster <- function(cl) {
  if (!inherits(cl, "miraiCluster")) stop("`cl` must be a 'miraiCluster'")
  daemons(0L, .compute = attr(cl, "id"))
  invisible()
}

# The next cluster's ID (and compute profile name): `k`, with k the number
# of profile names this session has created once it is set, so an ID is
# never used twice (a name the user happened to take is skipped).
.cluster_id <- function() {
  k <- length(.state$profile_names) + 1L
  while ((id <- sprintf("`%d`", k)) %in% .state$profile_names) k <- k + 1L
  id
}

# Makes `dispatcher` or `cleanup` given in make_cluster()'s `...` R's
# "matched by multiple actual arguments" error: `cleanup` would otherwise
# reach the daemons' command line twice.
.cluster_settings <- function(dispatcher, cleanup, ...) NULL

# The number of nodes `n` as an integer, at least one.
.cluster_size <- function(n, call = sys.call(-1L)) {
  n <- suppressWarnings(as.integer(n[1L]))
  if (is.na(n) || n < 1L) .abort("`n` must be 1 or greater", call)
  n
}

#' @exportS3Method parallel::stopCluster
stopCluster.miraiCluster <- function(cl) stop_cluster(cl)

# parallel's workers evaluate `do.call(fun, args, quote = TRUE)`; a node
# does the same with the function and arguments as its globals `node` and
# `data` (which stay, as the profile does not clean up). A load-balanced
# send carries a tag, which parallel reads back from the mirai.
#' @exportS3Method parallel::sendData
sendData.miraiNode <- function(node, data) {
  id <- attr(node, "id")
  if (!daemons_set(id)) stop(.messages$cluster_inactive)
  if (!identical(data[["type"]], "EXEC")) return(invisible())
  value <- data[["data"]]
  m <- mirai(do.call(node, data, quote = TRUE),
             node = value[["fun"]], data = value[["args"]], .compute = id)
  if (!is.null(value[["tag"]])) assign("tag", value[["tag"]], envir = m)
  assign("mirai", m, envir = node)
  invisible()
}

# The node's last mirai, once resolved: parallel reads its `value`.
#' @exportS3Method parallel::recvData
recvData.miraiNode <- function(node) {
  m <- .subset2(node, "mirai")
  if (is.null(m)) stop("no task has been sent to this node")
  call_mirai(m)
  m
}

# One completed load-balanced task: of the nodes' tagged mirai not yet
# received, the lowest-indexed one that has resolved (waiting until one
# has). Taking its class away marks it received, so each completion is
# handed out exactly once.
#' @exportS3Method parallel::recvOneData
recvOneData.miraiCluster <- function(cl) {
  pending <- lapply(unclass(cl), function(node) {
    m <- .subset2(node, "mirai")
    if (is_mirai(m) && !is.null(.subset2(m, "tag"))) m
  })
  i <- .Call(wrap__aio_race, pending, vapply(pending, is_mirai, logical(1L), USE.NAMES = FALSE))
  if (i < 0L) .interrupt()
  if (i == 0L) stop("no load-balanced task is awaiting collection on this cluster")
  m <- pending[[i]]
  .subset2(m, "data") # binds `value`
  class(m) <- NULL
  list(node = i, value = m)
}

#' @export
`[.miraiCluster` <- function(x, ...) .subset(x, ...)

#' @export
print.miraiCluster <- function(x, ...) {
  id <- attr(x, "id")
  cat(sprintf("< miraiCluster | ID: %s nodes: %d active: %s >\n", id, length(x), daemons_set(id)),
      file = stdout())
  invisible(x)
}

#' @export
print.miraiNode <- function(x, ...) {
  cat(sprintf("< miraiNode | node: %d cluster ID: %s >\n", attr(x, "node"), attr(x, "id")),
      file = stdout())
  invisible(x)
}
