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
#' @param remote a launch configuration from [remote_config()].
#' @inheritParams mirai
#' @return `launch_local()`: `n`, invisibly. `launch_remote()`: the launch
#'   commands (class 'miraiLaunchCmd'), invisibly when they were run.
#'
#' @section Authentication:
#' A host admits only daemons that present its secret: a random value made
#' for each compute profile when daemons are set. Local daemons receive it
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
  if (is.list(remote$args) && length(remote$args) > 1L && n != 1L && n != length(remote$args))
    stop("`n` must equal the length of `args`, or either must be 1", call. = FALSE)
  settings <- if (...length()) .daemon_settings(list(...)) else profile$settings
  secret <- attr(profile$host, "secret")
  cmds <- vapply(seq_len(n), function(i) {
    args <- .daemon_args(profile$url, settings, .daemon_stream(profile), profile$dispatcher)
    paste(paste0("MIRAI_SECRET=", secret), shQuote(remote$rscript), "-e", shQuote(args[2L]))
  }, character(1L))
  cmds <- structure(cmds, class = "miraiLaunchCmd")
  if (is.null(remote$command)) return(cmds)
  for (i in seq_len(n)) {
    cmd <- cmds[i]
    if (remote$quote) cmd <- shQuote(cmd)
    args <- remote$args[[min(i, length(remote$args))]]
    args[args == "."] <- cmd
    system2(remote$command, args, wait = FALSE, stdout = FALSE, stderr = FALSE)
  }
  invisible(cmds)
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

#' URL Constructors
#'
#' `local_url()` returns a fresh URL for connections on this machine: an
#' abstract socket on Linux, an IPC socket file elsewhere, or
#' `tcp://127.0.0.1:<port>` with `tcp = TRUE`.
#'
#' @param tcp logical: whether to return a TCP URL on the loopback address.
#' @param port the TCP port (0 picks a free port when listening).
#' @return A character string.
#' @examples
#' local_url()
#' local_url(tcp = TRUE, port = 5555)
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
  for (i in seq_len(n)) {
    .Call(wrap__host_launch, profile$host, .rscript(),
          .daemon_args(profile$url, settings, .daemon_stream(profile), profile$dispatcher), output)
  }
}

.rscript <- function() file.path(R.home("bin"), "Rscript")

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
  settings
}

.eval_sync <- function(task) .eval_task(task, new.env(parent = .GlobalEnv))
