#' Launch Daemons
#'
#' `launch_local()` starts more local daemons for a compute profile that is
#' already set, at any time: they dial its URL and start taking tasks.
#' `launch_remote()` starts daemons on other machines through a launch
#' configuration, or, without a launch command, returns the shell commands
#' to run there by hand.
#'
#' Each daemon's command is `Rscript -e 'mirai::daemon("<url>", ...)'`
#' with the profile's daemon settings (or those given in `...`, which then
#' replace them for this call), its TLS certificate, and without
#' dispatcher its random-number stream (`rs`).
#'
#' @param n the number of daemons to launch: a single non-negative number
#'   (a fraction is truncated). For `launch_remote()`, may also be a
#'   'miraiCluster' (one daemon per node) or 'miraiNode' (one daemon), whose
#'   compute profile is then used.
#' @param ... daemon settings (see [daemon()]); if none are given, those
#'   the profile was set with are used.
#' @param remote a launch configuration from [remote_config()],
#'   [ssh_config()], [cluster_config()] or [http_config()].
#' @inheritParams mirai
#' @return `launch_local()`: `n`, as given. `launch_remote()`: the launch
#'   commands, a character vector of class 'miraiLaunchCmd' (printed one by
#'   one), also when it ran them; for [http_config()], invisibly, the list
#'   of the servers' responses, one per daemon, each a list of `status`
#'   (the integer status code), `headers` (a named character vector) and
#'   `data` (the body as a character string).
#'
#' @details `launch_remote()` with a command (e.g. [ssh_config()] or
#'   [cluster_config()]) runs it in the background and does not wait: its
#'   messages, such as an SSH connection failure, appear on the console,
#'   and daemons that start connect whenever they are ready (see
#'   [status()]). With [http_config()], each request must be answered with
#'   a 2xx status within 5 seconds, else `launch_remote()` stops with an
#'   error (and `daemons(url = , remote = )` resets the profile).
#'
#' @section Authentication:
#' A host admits only daemons that prove they know its secret: a random
#' value made for each compute profile when daemons are set. The handshake
#' authenticates both sides: each sends a random nonce, the host proves the
#' secret first and a daemon serves only a host whose proof checks out,
#' then the daemon proves it (HMAC-SHA256 of both nonces, with a label for
#' each direction), so the secret never crosses the network. Plain `tcp://`
#' does not protect the stream after the handshake: use `tls+tcp://` or
#' `wss://` on untrusted networks. A peer without the secret, such as anything that
#' finds an open tcp port, is dropped before it receives any task and is
#' told nothing; `status()$refused` counts such peers.
#'
#' How a daemon receives the secret, never on a command line (process
#' lists are public):
#' * local daemons, and commands run through [remote_config()]: in their
#'   environment, as `MIRAI_SECRET`;
#' * [ssh_config()]: on the remote command's standard input, which the
#'   daemon reads in an ssh session when its environment has no secret
#'   (ssh is therefore run without `-f`, in a session of its own, and needs
#'   key-based authentication);
#' * [cluster_config()]: in the environment of the submitting command,
#'   which `sbatch` and `bsub` pass on to the job by default; `qsub` is
#'   given `-v MIRAI_SECRET` (with Slurm's `--export=NONE`, export it
#'   yourself);
#' * [http_config()]: not at all (it would cross the network): the jobs
#'   must find it as `MIRAI_SECRET` in their environment. Set the same long
#'   random value in the host's and the jobs' environment, e.g. as a line
#'   `MIRAI_SECRET=...` in `~/.Renviron` where the home directory is shared
#'   (as on Posit Workbench): [daemons()] then uses it as the profile's
#'   secret;
#' * by hand: the commands from `launch_remote()` print as the shell
#'   commands to run, `MIRAI_SECRET=... Rscript ...` (while the profile is
#'   set). Anyone who can read them can connect a daemon: treat them like a
#'   password, and do not paste them into logs or shared documents.
#'
#' If the environment variable `MIRAI_SECRET` is set in the host session,
#' [daemons()] uses its value instead of a random one: daemons started with
#' that value (and `autoexit = FALSE`) can then serve a new host at the same
#' URL, in this session or a later one. Choose a long random value.
#' @examples
#' \donttest{
#' daemons(url = local_url())
#' launch_local(2)
#' launch_remote(1)
#' daemons(0)
#' }
#' @export
launch_local <- function(n = 1L, ..., .compute = NULL) {
  profile <- .launchable_profile(.compute)
  count <- .launch_count(n)
  dots <- if (...length()) .launch_settings(profile, list(...)) else profile$dots
  .launch_local(profile, count, dots, profile$tls)
  n
}

#' @rdname launch_local
#' @export
launch_remote <- function(n = 1L, remote = remote_config(), ..., .compute = NULL) {
  call <- sys.call()
  if (inherits(n, c("miraiCluster", "miraiNode"))) {
    .compute <- attr(n, "id")
    n <- max(length(n), 1L)
  }
  profile <- .launchable_profile(.compute)
  n <- .launch_count(n)
  if (!is.list(remote))
    .abort("`remote` must be a launch configuration, e.g. from remote_config()", call)
  dots <- if (...length()) .launch_settings(profile, list(...)) else profile$dots
  command <- function() .daemon_call(profile, dots, profile$tls)
  if (identical(remote[["type"]], "http"))
    return(invisible(.launch_http(n, remote, command, call)))
  args <- if (length(remote[["command"]])) remote[["args"]]
  if (is.list(args)) {
    if (isTRUE(remote[["tunnel"]])) args <- .ssh_tunnel(args, profile$url)
    if (length(args) == 1L) {
      args <- args[[1L]]
    } else if (n != 1L && n != length(args)) {
      .abort("`n` must equal the length of `args`, or either must be 1", call)
    }
  }
  count <- if (is.list(args)) length(args) else n
  calls <- vapply(seq_len(count), function(i) command(), character(1L))
  cmds <- structure(sprintf("%s -e %s", remote[["rscript"]], shQuote(calls)),
                    class = "miraiLaunchCmd")
  if (length(remote[["command"]])) {
    secret <- attr(profile$host, "secret")
    for (i in seq_along(cmds))
      .run_launch(remote, if (is.list(args)) args[[i]] else args, cmds[i], secret)
  }
  cmds
}

# The number of daemons `n` given to a launcher, as an integer: a single
# non-negative number (a fraction is truncated).
.launch_count <- function(n, call = sys.call(-1L)) {
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 0 || n >= 2^31)
    .abort("`n` must be a single non-negative number of daemons", call)
  as.integer(n)
}

# A launch command as it must be run by hand: with the secret of the host
# it dials (found by its URL) in the daemon's environment.
.with_secret <- function(cmd) {
  url <- regmatches(cmd, regexec("mirai::daemon\\(\"([^\"]+)\"", cmd))[[1L]][2L]
  for (name in names(..)) {
    profile <- ..[[name]]
    if (identical(profile$url, url) && !is.null(profile$host))
      return(sprintf("MIRAI_SECRET=%s %s", attr(profile$host, "secret"), cmd))
  }
  cmd
}

#' @export
print.miraiLaunchCmd <- function(x, ...) {
  for (i in seq_along(x)) cat(sprintf("[%d]\n%s\n\n", i, .with_secret(unclass(x)[i])),
                              file = stdout())
  invisible(x)
}

# Run one launch command `cmd` through the configuration's command, with
# `args` in which "." stands for it (see remote_config()), as system2()
# would. The host's `secret` is never in the arguments (process lists are
# public): the command gets it in its environment, which schedulers pass
# on to the job (sbatch and bsub do by default; qsub is told to, with
# `-v MIRAI_SECRET`); ssh gets it on standard input, for the remote daemon
# to read. ssh's own messages are shown if it fails to connect.
.run_launch <- function(remote, args, cmd, secret) {
  dot <- args == "."
  ssh <- FALSE
  if (is.null(remote[["quote"]])) {
    # a job script for a scheduler, given to the shell as a here-document
    args[dot] <- cmd
    script <- paste0(args[1L], args[2L], args[3L])
    script <- sub("^((\\S*/)?qsub)(?=<<|\\s)", "\\1 -v MIRAI_SECRET", script, perl = TRUE)
    args <- c("-c", shQuote(script))
  } else {
    args[dot] <- if (isTRUE(remote[["quote"]])) shQuote(cmd) else cmd
    ssh <- basename(remote[["command"]][1L]) == "ssh"
    if (ssh) args[!dot] <- .ssh_without_fork(args[!dot])
  }
  line <- paste(c("exec", shQuote(remote[["command"]][1L]), args), collapse = " ")
  .Call(wrap__launch_command, line, secret, ssh, ssh)
  invisible()
}

# ssh's -f gives the remote command no standard input (it implies -n), and
# that is where the secret goes: the flag is taken out of ssh's flag
# clusters (such as "-fTp") and the launch detached instead, as -f would
# have done.
.ssh_without_fork <- function(args) {
  plain <- "46AaCGgKkMNnqsTtVvXxYy" # flags that take no value
  cluster <- sprintf("(^|\\s)-([%s]*)f([%sf]*[BbcDEeFIiJLlmOoPpQRSWw]?)(?=\\s|$)", plain, plain)
  args <- gsub(cluster, "\\1-\\2\\3", args, perl = TRUE)
  trimws(gsub("(^|\\s)-(?=\\s|$)", "\\1", args, perl = TRUE))
}

# Forward the host's port to the same port on each remote machine
# (`ssh -R`), so daemons there dial 127.0.0.1 and need no inbound access.
.ssh_tunnel <- function(args, url) {
  parts <- regmatches(url, regexec("^[a-z+]+://([^:/]*):([0-9]+)", url))[[1L]]
  if (length(parts) != 3L || parts[2L] != "127.0.0.1")
    stop("SSH tunnelling requires daemons `url` hostname to be `127.0.0.1`", call. = FALSE)
  prefix <- sprintf("-R %s:127.0.0.1:%s", parts[3L], parts[3L])
  lapply(args, function(a) {
    a[1L] <- sprintf("%s %s", prefix, a[1L])
    a
  })
}

# Launch through an HTTP API (see http_config()): one request per daemon,
# whose body is `data` with the daemon's call, escaped for a JSON string,
# in place of its `%s`. The list of the responses; an error for the first
# request that fails or is answered with a status other than 2xx.
.launch_http <- function(n, remote, next_call, call) {
  value <- function(x) if (is.function(x)) x() else x
  # (`data` first: the Posit Workbench default says what it lacks)
  data <- remote[["data"]]
  if (is.function(data)) data <- do.call(data, as.list(remote[["dots"]]))
  url <- value(remote[["url"]])
  headers <- value(remote[["headers"]])
  if (!is.null(remote[["cookie"]])) headers <- c(headers, Cookie = value(remote[["cookie"]]))
  if (!is.null(remote[["token"]]))
    headers <- c(headers, Authorization = sprintf("Bearer %s", value(remote[["token"]])))
  headers <- .http_headers(headers, call)
  method <- remote[["method"]]
  string <- function(x) is.character(x) && length(x) == 1L && !is.na(x)
  if (!string(url)) .abort("`url` must be a character string (or a function returning one)", call)
  if (!string(method)) .abort("`method` must be a character string", call)
  if (!string(data) || !grepl("%s", data, fixed = TRUE))
    .abort("`data` must be a character string (or a function returning one) with a `%s` where the daemon's call goes", call)
  calls <- vapply(seq_len(n), function(i) .json_escape(next_call()), character(1L))
  lapply(sprintf(data, calls), function(body) {
    res <- .http_request(url, method, headers, body, call = call)
    if (res$status < 200L || res$status > 299L) {
      detail <- substr(trimws(res$data), 1L, 200L)
      .abort(sprintf("HTTP request to '%s' failed: status %d%s", url, res$status,
                     if (nzchar(detail)) paste0(": ", detail) else ""), call)
    }
    res
  })
}

# Text escaped for the inside of a JSON string (as SPEC 4.3 has it:
# backslash, double quote, newline).
.json_escape <- function(x)
  gsub("\n", "\\n", gsub("\"", "\\\"", gsub("\\", "\\\\", x, fixed = TRUE), fixed = TRUE),
       fixed = TRUE)

# Request headers as a named character vector.
.http_headers <- function(headers, call) {
  if (is.null(headers)) return(character())
  if (is.list(headers)) headers <- unlist(headers)
  nms <- names(headers)
  if (!is.atomic(headers) || (length(headers) && (is.null(nms) || !all(nzchar(nms)) || anyNA(headers))))
    .abort("`headers` must be a named character vector (or a function returning one)", call)
  structure(as.character(headers), names = nms)
}

# One HTTP(S) request, waited for interruptibly: list(status = <integer>,
# headers = <named character>, data = <the body as text>). An error if no
# response comes (connection, TLS, timeout, malformed answer). For
# https://, the system's certificate authorities are trusted, or instead
# those in the PEM file that MIRAI_HTTP_CAFILE names.
.http_request <- function(url, method = "GET", headers = character(), body = "", timeout = 5,
                          call = sys.call(-1L)) {
  res <- .Call(wrap__http_request, url, method, headers, body, timeout,
               Sys.getenv("MIRAI_HTTP_CAFILE"))
  if (is.null(res)) .interrupt()
  if (is.character(res)) .abort(res, call)
  res
}

# The daemon() call for a profile's next daemon. Without dispatcher and
# seed, it takes the profile's next stream (with dispatcher, daemons get
# theirs from the dispatcher and the profile's cursor is left alone).
.daemon_call <- function(profile, dots, tls) {
  tls <- switch(length(tls) + 1L, "", sprintf(",tlscert=\"%s\"", tls),
                sprintf(",tlscert=c(\"%s\",\"%s\")", tls[1L], tls[2L]))
  if (is.null(profile$dispatcher)) {
    rs <- if (is.null(profile$seed)) .next_stream(profile)
    return(sprintf("mirai::daemon(\"%s\",dispatcher=FALSE%s%s,rs=c(%s))", profile$url, dots, tls,
                   paste(rs, collapse = ",")))
  }
  sprintf("mirai::daemon(\"%s\"%s%s)", profile$url, dots, tls)
}

# Daemon settings given to a launcher: as daemons() normalises them; a
# `tlscert` among them becomes the profile's TLS setting.
.launch_settings <- function(profile, dots) {
  settings <- .daemon_settings(dots)
  if (!is.null(settings$tlscert)) profile$tls <- settings$tlscert
  settings$dots
}

.launchable_profile <- function(.compute, call = sys.call(-1L)) {
  profile <- .profile(.compute)
  if (is.null(profile)) .abort(.messages$requires_daemons, call)
  if (profile$sync) .abort(.messages$sync_launch, call)
  profile
}

# Start `n` local daemon processes for a profile.
.launch_local <- function(profile, n, dots, tls) {
  output <- grepl(",output=TRUE", dots, fixed = TRUE)
  for (i in seq_len(n))
    .Call(wrap__host_launch, profile$host, .rscript(), c("-e", .daemon_call(profile, dots, tls)),
          output)
}

.rscript <- function() file.path(R.home("bin"), "Rscript")

#' Generic Remote Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`:
#' the command that starts a daemon elsewhere, with its arguments.
#'
#' @param command the command used to launch, e.g. `"ssh"`, or `NULL` to
#'   have [launch_remote()] return the commands for manual deployment.
#' @param args a character vector of arguments, one element of which is `"."`
#'   (replaced by the daemon's command); or a list of such vectors, one per
#'   daemon.
#' @param rscript the Rscript executable on the remote machine.
#' @param quote logical: whether to shell-quote the daemon's command where
#'   it replaces `"."`.
#' @return A list: `command`, `args`, `rscript`, `quote`, `tunnel`.
#' @examples
#' remote_config(command = "ssh", args = c("user@host", "."))
#' @export
remote_config <- function(command = NULL, args = c("", "."), rscript = "Rscript", quote = FALSE) {
  for (a in if (is.list(args)) args else list(args)) {
    if (!any(a == ".", na.rm = TRUE))
      stop("`.` must be an element of the character vector(s) supplied to `args`", call. = FALSE)
  }
  list(command = command, args = args, rscript = rscript, quote = quote, tunnel = FALSE)
}

#' SSH Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`
#' that starts daemons over SSH.
#'
#' @param remotes character vector of `"ssh://[user@]host[:port]"` URLs, one
#'   per machine (port 22 if not given).
#' @param tunnel logical: `TRUE` tunnels the host's port to the remote
#'   machines (`ssh -R`), so they need no inbound access to the host; the
#'   daemons `url` must then be `tcp://127.0.0.1:<port>`.
#' @param timeout seconds to wait for each SSH connection.
#' @param command the SSH executable (or a wrapper script taking the same
#'   arguments).
#' @param rscript the Rscript executable on the remote machines.
#' @return A list: `command`, `args` (one element per remote), `rscript`,
#'   `quote`, `tunnel`.
#' @examples
#' ssh_config(c("ssh://10.75.32.90:222", "ssh://user@nodename"))
#' ssh_config("ssh://10.75.32.90", tunnel = TRUE)
#' @export
ssh_config <- function(remotes, tunnel = FALSE, timeout = 10, command = "ssh",
                       rscript = "Rscript") {
  pattern <- "^ssh://(([^@/]+)@)?(\\[[^]/]+\\]|[^:/@]+)(:([0-9]+))?/?$"
  args <- lapply(remotes, function(r) {
    if (!grepl(pattern, r))
      stop(sprintf("`remotes`: '%s' is not of the form ssh://[user@]host[:port]", r),
           call. = FALSE)
    user <- sub(pattern, "\\2", r)
    # (ssh takes an IPv6 address without its brackets)
    host <- sub("^\\[(.*)\\]$", "\\1", sub(pattern, "\\3", r))
    port <- sub(pattern, "\\5", r)
    c(sprintf("-o ConnectTimeout=%s -fTp %s", as.character(timeout),
              if (nzchar(port)) port else "22"),
      if (nzchar(user)) sprintf("%s@%s", user, host) else host, ".")
  })
  list(command = command, args = args, rscript = rscript, quote = TRUE, tunnel = isTRUE(tunnel))
}

#' HPC Cluster Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`
#' that submits one job per daemon to a scheduler: Slurm (`sbatch`), SGE,
#' Torque or PBS (`qsub`), LSF (`bsub`). Each job is a shell script made of
#' `options` and the daemon's command, given to `command` as a
#' here-document.
#'
#' @param command the submission command: `"sbatch"`, `"qsub"` or `"bsub"`
#'   (only its first element is used).
#' @param options scheduler directives and shell lines, newline-separated,
#'   e.g. `"#SBATCH --job-name=mirai\n#SBATCH --mem=10G\nmodule load R"`;
#'   leading spaces and tabs of each line are dropped, and no shebang is
#'   needed.
#' @param rscript the Rscript executable on the cluster nodes.
#' @return A list: `command`, `args`, `rscript`, `quote`.
#' @examples
#' cluster_config(command = "sbatch", options = "#SBATCH --job-name=mirai
#'                #SBATCH --mem=8G")
#' @export
cluster_config <- function(command = "sbatch", options = "", rscript = "Rscript") {
  command <- command[[1L]]
  options <- gsub("^[ \t]+|(?<=\n)[ \t]+", "", options, perl = TRUE)
  list(command = "/bin/sh",
       args = c(sprintf("%s<<'EOF'\n#!/bin/sh\n%s\n", command, options), ".", "\nEOF"),
       rscript = rscript, quote = NULL)
}

#' HTTP API Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`
#' that starts each daemon through an HTTP API: one request per daemon
#' whose body carries the daemon's call. The defaults launch jobs on
#' Posit Workbench from a session running there.
#'
#' @param url the API endpoint (`http://` or `https://`), or a function
#'   returning it.
#' @param method the HTTP method, e.g. `"POST"` or `"PUT"`.
#' @param headers a named character vector (or list) of request headers, or
#'   a function returning one.
#' @param data the request body: a [sprintf()] format string in which `%s`
#'   is replaced by the daemon's call, escaped for the inside of a JSON
#'   string (backslashes, double quotes and newlines), or a function
#'   returning one (called with the arguments in `...`).
#' @param ... arguments for `data` when it is a function. For the Posit
#'   Workbench default: `rscript` (default `"Rscript"`), `job_name`
#'   (`"mirai_daemon"`), `cluster` (the name of a compute cluster; the
#'   first by default), `resource_profile` (the name of one of its
#'   resource profiles), or `cpus` and `memory` (MB) for custom resources
#'   (defaults 1 and 512 when either is given); with none of these, the
#'   cluster's first resource profile.
#' @param cookie (optional) a Cookie header value, or a function returning
#'   one, added to the headers.
#' @param token (optional) a bearer token, or a function returning one,
#'   added as the header `Authorization: Bearer <token>`.
#' @return A list: `type`, `url`, `method`, `headers`, `data`, `dots` (the
#'   arguments in `...`), `cookie`, `token`. Creating it does no work: the
#'   functions are called when launching, once per [launch_remote()] call.
#'
#' @details Each request is made over a new connection and must be answered
#'   within 5 seconds with a 2xx status; [launch_remote()] returns the
#'   responses. For `https://` URLs the server's certificate is verified
#'   against the system's certificate authorities, or, if the environment
#'   variable `MIRAI_HTTP_CAFILE` names a PEM file, against the
#'   authorities in that file instead (e.g. an organisation's own).
#'
#'   The daemon's call in the request carries no secret (it never crosses
#'   the network): a daemon started this way is admitted only if it finds
#'   the host's secret as `MIRAI_SECRET` in its environment. Set the same
#'   long random value as `MIRAI_SECRET` for the host session (before
#'   [daemons()], which then uses it) and for the jobs the API starts, e.g.
#'   as a line in `~/.Renviron` where the home directory is shared with
#'   them (as on Posit Workbench); see [launch_remote()].
#'
#'   The Posit Workbench defaults (`url`, `headers`, `data` are then
#'   functions) read the environment variables `RS_SERVER_ADDRESS` and
#'   `RS_SESSION_RPC_COOKIE` of a Workbench session, and look up its
#'   compute clusters (`<RS_SERVER_ADDRESS>/api/get_compute_envs`) to build
#'   a `launch_job` request; this needs the 'secretbase' package. Outside
#'   Workbench they stop with "can only be used from Posit Workbench".
#'   If the server refuses the session's cookie, launching stops with that
#'   error: the cookie is not captured through the RStudio viewer instead.
#' @examples
#' http_config("http://10.0.0.1:8080/jobs", data = '{"command": "%s"}',
#'             token = function() Sys.getenv("API_TOKEN"))
#'
#' # on Posit Workbench, with a chosen cluster and custom resources
#' http_config(cluster = "Kubernetes", cpus = 2, memory = 4096)
#' @export
http_config <- function(url = posit_workbench_url, method = "POST",
                        headers = posit_workbench_headers, data = posit_workbench_data, ...,
                        cookie = NULL, token = NULL) {
  list(type = "http", url = url, method = method, headers = headers, data = data,
       dots = list(...), cookie = cookie, token = token)
}

# The Posit Workbench defaults of http_config(): functions, called when
# launching, that read the session's environment.
.posit_message <- "can only be used from Posit Workbench"

# The Workbench server's address (without a trailing slash).
.posit_server <- function() {
  address <- Sys.getenv("RS_SERVER_ADDRESS")
  if (!nzchar(address)) stop(.posit_message, call. = FALSE)
  sub("/+$", "", address)
}

.posit_cookie <- function() {
  cookie <- Sys.getenv("RS_SESSION_RPC_COOKIE")
  if (!nzchar(cookie)) stop(.posit_message, call. = FALSE)
  cookie
}

posit_workbench_url <- function() sprintf("%s/api/launch_job", .posit_server())

posit_workbench_headers <- function() {
  cookie <- .posit_cookie()
  c(Cookie = cookie, "X-RS-Session-Server-RPC-Cookie" = cookie)
}

# The body of a Workbench launch_job request: a job on the first compute
# cluster (or the one named) running `rscript -e` with the daemon's call
# (at the `%s`, as a sprintf() format: any other `%` is doubled), with this
# session's library paths.
posit_workbench_data <- function(rscript = "Rscript", job_name = "mirai_daemon", cluster = NULL,
                                 resource_profile = NULL, cpus = NULL, memory = NULL) {
  if (!requireNamespace("secretbase", quietly = TRUE))
    stop("the secretbase package is required, try: `install.packages('secretbase')`", call. = FALSE)
  if (!nzchar(Sys.getenv("RS_SERVER_ADDRESS")) || !nzchar(Sys.getenv("RS_SESSION_RPC_COOKIE")))
    stop(.posit_message, call. = FALSE)
  # (the session cookie may also be captured through the viewer when this
  # look-up is refused: not done here)
  envs <- tryCatch(
    .http_request(sprintf("%s/api/get_compute_envs", .posit_server()), "GET",
                  posit_workbench_headers()),
    error = function(e) NULL
  )
  if (is.null(envs) || envs$status != 200L) stop(.posit_message, call. = FALSE)
  clusters <- tryCatch(secretbase::jsondec(envs$data), error = function(e) NULL)
  clusters <- if (is.list(clusters) && is.list(clusters[["result"]])) clusters[["result"]][["clusters"]]
  clusters <- Filter(is.list, if (is.list(clusters)) clusters else list())
  if (!length(clusters)) stop("Posit Workbench reported no compute clusters", call. = FALSE)
  named <- function(items) vapply(items, function(x) {
    name <- if (is.list(x)) x[["name"]]
    if (is.character(name) && length(name) == 1L) name else NA_character_
  }, character(1L))
  cluster_names <- named(clusters)
  if (is.null(cluster)) {
    chosen <- clusters[[1L]]
  } else {
    if (!cluster %in% cluster_names)
      stop(sprintf("cluster '%s' not found. Available: %s", cluster,
                   paste(cluster_names, collapse = ", ")), call. = FALSE)
    chosen <- clusters[[match(cluster, cluster_names)]]
  }
  placeholder <- "<<mirai daemon call>>"
  libs <- paste(encodeString(.libPaths(), quote = "\""), collapse = ",")
  job <- list(cluster = chosen[["name"]], container = list(image = chosen[["defaultImage"]]),
              name = job_name, exe = rscript,
              args = c("-e", sprintf("{.libPaths(c(%s));%s}", libs, placeholder)))
  profiles <- Filter(is.list, if (is.list(chosen[["resourceProfiles"]])) chosen[["resourceProfiles"]])
  if (!is.null(resource_profile)) {
    profile_names <- named(profiles)
    if (!resource_profile %in% profile_names)
      stop(sprintf("resource profile '%s' not found. Available: %s", resource_profile,
                   paste(profile_names, collapse = ", ")), call. = FALSE)
    job[["resourceProfile"]] <- resource_profile
  } else if (!is.null(cpus) || !is.null(memory)) {
    job[["resources"]] <- list(cpus = cpus %||% 1L, memory = memory %||% 512L)
  } else if (length(profiles)) {
    job[["resourceProfile"]] <- profiles[[1L]][["name"]]
  }
  json <- secretbase::jsonenc(list(method = "launch_job", kwparams = list(job = job)))
  sub(placeholder, "%s", gsub("%", "%%", json, fixed = TRUE), fixed = TRUE)
}

#' URL Constructors
#'
#' `host_url()` returns URLs at which daemons on other machines can reach
#' this one: one per network interface (IPv4, loopback excluded), named by
#' interface; if there is none, the machine's name. `local_url()` returns
#' a fresh URL for connections on this machine: an abstract socket on
#' Linux, an IPC socket file elsewhere, or `tcp://127.0.0.1:<port>` with
#' `tcp = TRUE`.
#'
#' @param tls logical: whether to return secure (`tls+tcp://`) URLs.
#' @param tcp logical: whether to return a TCP URL on the loopback address.
#' @param port the TCP port (0 picks a free port when listening).
#' @return `host_url()`: a named character vector. `local_url()`: a
#'   character string.
#' @examples
#' host_url()
#' host_url(port = 5555)
#' local_url()
#' local_url(tcp = TRUE, port = 5555)
#' @export
host_url <- function(tls = FALSE, port = 0) {
  ip <- .Call(wrap__interface_addresses)
  ip <- ip[!startsWith(ip, "127.")]
  hosts <- if (length(ip)) ip else Sys.info()[["nodename"]]
  urls <- sprintf("%s://%s:%d", if (tls) "tls+tcp" else "tcp", hosts, as.integer(port))
  names(urls) <- names(ip)
  urls
}

#' @rdname host_url
#' @export
local_url <- function(tcp = FALSE, port = 0) {
  if (tcp) return(sprintf("tcp://127.0.0.1:%d", as.integer(port)))
  name <- .Call(wrap__random_hex, 12L)
  switch(Sys.info()[["sysname"]],
         Linux = sprintf("abstract://%s", name),
         Windows = sprintf("ipc://%s", name),
         sprintf("ipc:///tmp/%s", name))
}
