#' Launch Daemons
#'
#' `launch_local()` starts more local daemons for a compute profile that is
#' already set, at any time: they dial its URL and start taking tasks.
#' `launch_remote()` starts daemons on other machines through a launch
#' configuration, or, without a launch command, returns the shell commands
#' to run there by hand.
#'
#' @param n integer number of daemons to launch.
#' @param ... daemon settings (see [daemon()]); if none are given, those
#'   the profile was set with are used.
#' @param remote a launch configuration from [remote_config()],
#'   [ssh_config()], [cluster_config()] or [http_config()].
#' @inheritParams mirai
#' @return `launch_local()`: `n`, invisibly. `launch_remote()`: the launch
#'   commands (class 'miraiLaunchCmd'), invisibly when they were run.
#'
#' @section Authentication:
#' A host admits only daemons that prove they know its secret: a random
#' value made for each compute profile when daemons are set. The proof is an
#' HMAC-SHA256 of a random challenge from the host, so the secret never
#' crosses the network. Local daemons receive it
#' in their environment. The commands from `launch_remote()` carry it as
#' `MIRAI_SECRET=... Rscript ...`, so anyone who can read them can connect
#' a daemon: treat them like a password. Do not paste them into logs or
#' shared documents, and prefer launching through [ssh_config()] or a
#' scheduler over running them where other users can list your processes'
#' command lines (the secret is visible in the shell command while it
#' starts). A peer without the secret, such as anything that finds an open
#' tcp port, is dropped before it receives any task and is told nothing;
#' `status()$refused` counts such peers.
#'
#' If the environment variable `MIRAI_SECRET` is set in the host session,
#' [daemons()] uses its value instead of a random one: daemons started with
#' that value (and `autoexit = FALSE`) can then serve a new host at the same
#' URL, in this session or a later one. Choose a long random value.
#' @examples
#' \donttest{
#' daemons(url = local_url(), dispatcher = FALSE)
#' launch_local(2)
#' Sys.sleep(1)
#' status()
#' daemons(0)
#' }
#' @export
launch_local <- function(n = 1L, ..., .compute = NULL) {
  profile <- .launchable_profile(.compute)
  n <- .check_count(n)
  settings <- if (...length()) .daemon_settings(list(...)) else profile$settings
  .launch_local(profile, n, settings)
  invisible(n)
}

#' @rdname launch_local
#' @export
launch_remote <- function(n = 1L, remote = remote_config(), ..., .compute = NULL) {
  profile <- .launchable_profile(.compute)
  n <- .check_count(n)
  if (!is.list(remote) || !is.list(remote$args))
    stop("`remote` must be a launch configuration, e.g. from remote_config()", call. = FALSE)
  if (length(remote$args) > 1L && n != 1L && n != length(remote$args))
    stop("`n` must equal the length of `args`, or either must be 1", call. = FALSE)
  settings <- if (...length()) .daemon_settings(list(...)) else profile$settings
  secret <- attr(profile$host, "secret")
  settings <- .with_tlscert(profile, settings)
  cmds <- vapply(seq_len(n), function(i) {
    args <- .daemon_args(profile$url, settings, .daemon_stream(profile), profile$dispatcher)
    paste(paste0("MIRAI_SECRET=", secret), shQuote(remote$rscript), "-e", shQuote(args[2L]))
  }, character(1L))
  cmds <- structure(cmds, class = "miraiLaunchCmd")
  if (isTRUE(remote$http)) {
    for (cmd in cmds) .launch_http(remote, cmd)
    return(invisible(cmds))
  }
  if (is.null(remote$command)) return(cmds)
  if (!nzchar(Sys.which(remote$command)))
    stop(sprintf("launch command '%s' not found", remote$command), call. = FALSE)
  tunnel <- if (isTRUE(remote$tunnel)) .ssh_tunnel(profile$url)
  for (i in seq_len(n)) {
    args <- remote$args[[min(i, length(remote$args))]]
    cmd <- if (remote$quote) shQuote(cmds[i]) else cmds[i]
    if (isTRUE(remote$script)) {
      .launch_script(remote, cmds[i])
      next
    }
    args <- c(tunnel, args)
    args[args == "."] <- cmd
    status <- system2(remote$command, args, wait = isTRUE(remote$wait), stdout = FALSE,
                      stderr = FALSE)
    if (isTRUE(remote$wait) && !identical(status, 0L))
      stop(sprintf("launch command '%s' failed with status %s", remote$command, status),
           call. = FALSE)
  }
  invisible(cmds)
}

# ssh arguments forwarding the host's port to the same port on the remote
# machine, so its daemons dial 127.0.0.1 and need no inbound access.
.ssh_tunnel <- function(url) {
  if (!grepl("^tcp://127\\.0\\.0\\.1:[0-9]+$", url))
    stop("SSH tunnelling requires daemons `url` hostname to be `127.0.0.1`", call. = FALSE)
  port <- sub("^.*:", "", url)
  c("-R", sprintf("%s:127.0.0.1:%s", port, port))
}

# Ask an HTTP API to start one daemon running `cmd`.
.launch_http <- function(remote, cmd) {
  value <- function(x) if (is.function(x)) x() else x
  headers <- unlist(value(remote$headers)) %||% character()
  cookie <- value(remote$cookie)
  token <- value(remote$token)
  if (!is.null(cookie)) headers <- c(headers, Cookie = cookie)
  if (!is.null(token)) headers <- c(headers, Authorization = paste("Bearer", token))
  body <- .http_body(remote$data, cmd)
  code <- .Call(wrap__http_request, value(remote$url), remote$method,
                headers, body, 30)
  if (code < 200L || code > 299L)
    stop(sprintf("HTTP launch failed with status %d", code), call. = FALSE)
  invisible(code)
}

# The request body: `data` called with the command, or a format string
# whose %s becomes the command escaped as a JSON string; no data, the
# command itself.
.http_body <- function(data, cmd) {
  if (is.null(data)) return(cmd)
  if (is.function(data)) return(as.character(data(cmd)))
  escaped <- gsub("\"", "\\\"", gsub("\\", "\\\\", cmd, fixed = TRUE), fixed = TRUE)
  sprintf(data, escaped)
}

# Submit a job script running one daemon to a scheduler (or any command
# that reads a script on its standard input).
.launch_script <- function(remote, cmd) {
  script <- tempfile("mirai-job-", fileext = ".sh")
  writeLines(c("#!/bin/sh", remote$options, cmd), script)
  system2(remote$command, stdin = script, stdout = FALSE, stderr = FALSE, wait = FALSE)
  invisible()
}

#' @export
print.miraiLaunchCmd <- function(x, ...) {
  for (i in seq_along(x)) cat(sprintf("[%d]\n%s\n\n", i, x[i]), file = stdout())
  invisible(x)
}

#' Generic Remote Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`:
#' the command that starts a daemon elsewhere, with its arguments.
#'
#' @param command the command used to launch, e.g. `"ssh"`, or `NULL` to
#'   have [launch_remote()] return the commands for manual deployment.
#' @param args a character vector of arguments, one element of which is `"."`
#'   (replaced by the daemon's R command); or a list of such vectors, one per
#'   daemon.
#' @param rscript the Rscript executable on the remote machine.
#' @param quote logical: whether to quote the daemon's R command.
#' @return A list (a launch configuration).
#' @examples
#' remote_config(command = "ssh", args = c("user@host", "."))
#' @export
remote_config <- function(command = NULL, args = c("", "."), rscript = "Rscript", quote = FALSE) {
  if (!is.list(args)) args <- list(args)
  for (a in args) {
    if (!is.character(a) || !"." %in% a)
      stop("`.` must be an element of the character vector(s) supplied to `args`", call. = FALSE)
  }
  if (!is.null(command) && (!is.character(command) || length(command) != 1L))
    stop("`command` must be NULL or a character string", call. = FALSE)
  .check_flag(quote, "quote")
  list(command = command, args = args, rscript = rscript, quote = quote)
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
#' @return A list (a launch configuration).
#' @examples
#' ssh_config(c("ssh://10.75.32.90:222", "ssh://user@nodename"))
#' ssh_config("ssh://10.75.32.90", tunnel = TRUE)
#' @export
ssh_config <- function(remotes, tunnel = FALSE, timeout = 10, command = "ssh",
                       rscript = "Rscript") {
  if (missing(remotes) || !is.character(remotes) || !length(remotes) || anyNA(remotes))
    stop("`remotes` must be a character vector of ssh://[user@]host[:port] URLs", call. = FALSE)
  .check_flag(tunnel, "tunnel")
  if (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout <= 0)
    stop("`timeout` must be a positive number of seconds", call. = FALSE)
  pattern <- "^ssh://(([^@/]+)@)?([^:/@]+|\\[[^]/]+\\])(:([0-9]+))?/?$"
  args <- lapply(remotes, function(r) {
    if (!grepl(pattern, r))
      stop(sprintf("`remotes`: '%s' is not of the form ssh://[user@]host[:port]", r), call. = FALSE)
    user <- sub(pattern, "\\2", r)
    host <- sub(pattern, "\\3", r)
    port <- sub(pattern, "\\5", r)
    c("-o", sprintf("ConnectTimeout=%d", as.integer(ceiling(timeout))),
      "-fTp", if (nzchar(port)) port else "22",
      if (nzchar(user)) paste0(user, "@", host) else host, ".")
  })
  list(command = command, args = args, rscript = rscript, quote = TRUE, tunnel = tunnel,
       wait = TRUE)
}

#' HPC Cluster Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`
#' that submits one job per daemon to a scheduler: Slurm (`sbatch`), SGE or
#' PBS (`qsub`), LSF (`bsub`). Each job is a shell script made of `options`
#' and the daemon's command, given to `command` on its standard input.
#'
#' @param command the submission command: `"sbatch"`, `"qsub"` or `"bsub"`
#'   (any command reading a script on its standard input works).
#' @param options scheduler directives, one per line, e.g.
#'   `"#SBATCH --job-name=mirai\n#SBATCH --mem=10G"`; may also load modules
#'   (`"module load R"`).
#' @param rscript the Rscript executable on the cluster nodes.
#' @return A list (a launch configuration).
#' @examples
#' cluster_config(command = "sbatch", options = "#SBATCH --job-name=mirai
#' #SBATCH --mem=8G")
#' @export
cluster_config <- function(command = "sbatch", options = "", rscript = "Rscript") {
  if (!is.character(command) || length(command) != 1L || is.na(command) || !nzchar(command))
    stop("`command` must be a character string", call. = FALSE)
  if (!is.character(options) || anyNA(options))
    stop("`options` must be a character string of scheduler directives", call. = FALSE)
  options <- trimws(unlist(strsplit(options, "\n", fixed = TRUE)), "left")
  list(command = command, args = list("."), rscript = rscript, quote = FALSE, script = TRUE,
       options = options[nzchar(options)])
}

#' HTTP API Launch Configuration
#'
#' A launch configuration for [launch_remote()] and `daemons(remote = )`
#' that starts each daemon through an HTTP API (for example a cloud or
#' workbench job service): one request per daemon, carrying the daemon's
#' shell command in its body.
#'
#' @param url the API endpoint (`http://` only in this version), or a
#'   function returning it, called at launch time.
#' @param method the HTTP method.
#' @param headers a named character vector (or list) of request headers, or
#'   a function returning one.
#' @param cookie (optional) a Cookie header value, or a function returning
#'   one.
#' @param token (optional) a bearer token (sent as `Authorization: Bearer
#'   <token>`), or a function returning one.
#' @param data the request body: a format string in which `%s` is replaced
#'   by the daemon's command escaped as a JSON string (e.g.
#'   `'{"command": "%s"}'`), or a function taking the command and returning
#'   the body. `NULL` sends the command itself.
#' @param rscript the Rscript executable where the daemons run.
#' @return A list (a launch configuration).
#' @examples
#' http_config("http://10.0.0.1:8080/jobs", token = "xyz",
#'             data = '{"command": "%s"}')
#' @export
http_config <- function(url, method = "POST", headers = NULL, cookie = NULL, token = NULL,
                        data = NULL, rscript = "Rscript") {
  if (missing(url) || !(is.function(url) || is.character(url) && length(url) == 1L && !is.na(url)))
    stop("`url` must be a character string or a function", call. = FALSE)
  if (!is.character(method) || length(method) != 1L || is.na(method) || !nzchar(method))
    stop("`method` must be a character string", call. = FALSE)
  if (!is.null(data) && !is.function(data) &&
      !(is.character(data) && length(data) == 1L && grepl("%s", data, fixed = TRUE)))
    stop("`data` must be a format string containing %s, or a function", call. = FALSE)
  list(url = url, method = method, headers = headers, cookie = cookie, token = token,
       data = data, rscript = rscript, http = TRUE, args = list("."))
}

#' URL Constructors
#'
#' `host_url()` returns URLs at which daemons on other machines can reach
#' this one: one per network interface (IPv4), named by interface, loopback
#' last. `local_url()` returns a fresh URL for connections on this machine:
#' an abstract socket on Linux, an IPC socket file elsewhere, or
#' `tcp://127.0.0.1:<port>` with `tcp = TRUE`.
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
  .check_flag(tls, "tls")
  if (!is.numeric(port) || length(port) != 1L || is.na(port) || port < 0 || port > 65535)
    stop("`port` must be a number from 0 to 65535", call. = FALSE)
  addrs <- .Call(wrap__interface_addresses)
  urls <- sprintf("%s://%s:%d", if (tls) "tls+tcp" else "tcp", addrs, as.integer(port))
  names(urls) <- names(addrs)
  urls
}

#' @rdname host_url
#' @export
local_url <- function(tcp = FALSE, port = 0) {
  .check_flag(tcp, "tcp")
  if (tcp) return(sprintf("tcp://127.0.0.1:%d", as.integer(port)))
  .state$url_counter <- .state$url_counter + 1L
  name <- sprintf("mirai-%d-%d-%d", Sys.getpid(), .state$url_counter,
                  as.integer((as.numeric(Sys.time()) * 1000) %% 1e9))
  if (Sys.info()[["sysname"]] == "Linux") sprintf("abstract://%s", name) else
    sprintf("ipc://%s", file.path(tempdir(), name))
}

.launchable_profile <- function(.compute) {
  profile <- .profile(.compute)
  if (is.null(profile)) stop(.messages$requires_daemons, call. = FALSE)
  if (profile$sync) stop(.messages$sync_launch, call. = FALSE)
  profile
}

.check_count <- function(n) {
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 0)
    stop("`n` must be a single non-negative number", call. = FALSE)
  as.integer(n)
}

.launch_local <- function(profile, n, settings) {
  output <- isTRUE(settings$output)
  settings <- .with_tlscert(profile, settings)
  for (i in seq_len(n)) {
    .Call(wrap__host_launch, profile$host, .rscript(),
          .daemon_args(profile$url, settings, .daemon_stream(profile), profile$dispatcher), output)
  }
}

.rscript <- function() file.path(R.home("bin"), "Rscript")

# Daemon settings plus, when the host made its own TLS credentials, the
# certificate its daemons must trust (unless the user gave one).
.with_tlscert <- function(profile, settings) {
  ca <- attr(profile$host, "tlscert")
  if (!is.null(ca) && is.null(settings$tlscert)) settings$tlscert <- c(ca, "")
  settings
}

# Rscript arguments running mirai::daemon(url, <settings>, rs = <stream>).
.daemon_args <- function(url, settings, rs = NULL, dispatcher = FALSE) {
  args <- c(list(url, dispatcher = isTRUE(dispatcher)), settings)
  if (!is.null(rs)) args$rs <- rs
  values <- vapply(args, function(v) paste(deparse(v, control = c("keepInteger", "keepNA")),
                                           collapse = ""), character(1L))
  nms <- names(args)
  inner <- paste(ifelse(nzchar(nms), paste0(nms, " = ", values), values), collapse = ", ")
  c("-e", sprintf("mirai::daemon(%s)", inner))
}

.daemon_setting_names <- c("asyncdial", "autoexit", "cleanup", "output", "idletime",
                           "walltime", "maxtasks", "tlscert")

# Validate daemon settings given to daemons() / the launchers.
.daemon_settings <- function(settings) {
  if (!length(settings)) return(list())
  nms <- names(settings)
  if (is.null(nms) || !all(nzchar(nms)))
    stop("daemon settings in `...` must be named", call. = FALSE)
  bad <- setdiff(nms, .daemon_setting_names)
  if (length(bad))
    stop(sprintf("unknown daemon setting(s) in `...`: %s", paste(bad, collapse = ", ")), call. = FALSE)
  for (f in intersect(nms, c("asyncdial", "cleanup", "output"))) .check_flag(settings[[f]], f)
  for (f in intersect(nms, c("idletime", "walltime", "maxtasks"))) .check_limit(settings[[f]], f)
  if (!is.null(settings$autoexit) && (!is.logical(settings$autoexit) || length(settings$autoexit) != 1L))
    stop("`autoexit` must be TRUE, NA or FALSE", call. = FALSE)
  if (!is.null(settings$tlscert)) .check_tlscert(settings$tlscert)
  settings
}

.eval_sync <- function(task) .eval_task(task, new.env(parent = .GlobalEnv))
