#' Custom Serialization Configuration
#'
#' Makes a configuration for [daemons()] (its `serial` argument) that
#' serializes objects of the given classes with functions of your choice
#' rather than R's own serialization: for objects such as arrays held by an
#' external library, which R would send as invalid pointers.
#'
#' Hooks apply only to the objects R serializes by reference: external
#' pointers, weak references and environments (other than the global, base,
#' empty, namespace and package environments), wherever they appear in a
#' task or its result. Of the classes configured, the first one the object
#' inherits from is used. Plain lists and vectors never use the hooks, even
#' when their class is listed.
#'
#' A configuration needs a dispatcher (`daemons(dispatcher = TRUE)`, the
#' default), and is ignored without one. It is sent, functions included, to
#' every daemon as it connects: functions from a package travel by reference,
#' so that package must be installed on the daemons.
#'
#' @param class a character vector of classes.
#' @param sfunc a function, or a list of functions (one for each class),
#'   taking an object of that class and returning a raw vector.
#' @param ufunc a function, or a list of functions (one for each class),
#'   taking that raw vector and returning the object.
#'
#' @return An unnamed list of three: the class vector, the list of
#'   serialization functions and the list of unserialization functions.
#'
#' @seealso [register_serial()] to apply a configuration to every later
#'   [daemons()] call.
#' @examples
#' cfg <- serial_config("my_class", function(x) serialize(x, NULL), unserialize)
#' str(cfg)
#'
#' if (requireNamespace("nanoarrow", quietly = TRUE)) {
#'   cfg <- serial_config(
#'     "nanoarrow_array",
#'     function(x) {
#'       con <- rawConnection(raw(), "wb")
#'       on.exit(close(con))
#'       nanoarrow::write_nanoarrow(x, con)
#'       rawConnectionValue(con)
#'     },
#'     function(x) nanoarrow::as_nanoarrow_array(nanoarrow::read_nanoarrow(x))
#'   )
#' }
#' \donttest{
#' daemons(1, serial = cfg)
#' daemons(0)
#' }
#' @export
serial_config <- function(class, sfunc, ufunc) {
  if (!is.character(class)) stop("`class` must be a character vector")
  n <- length(class)
  if (length(sfunc) != n || length(ufunc) != n)
    stop("`class`, `sfunc` and `ufunc` must all be the same length")
  if (!is.function(sfunc) && !is.list(sfunc))
    stop("`sfunc` must be a function or list of functions")
  if (!is.function(ufunc) && !is.list(ufunc))
    stop("`ufunc` must be a function or list of functions")
  if (is.function(sfunc)) sfunc <- list(sfunc)
  if (is.function(ufunc)) ufunc <- list(ufunc)
  list(class, sfunc, ufunc)
}

#' Register a Serialization Configuration
#'
#' Adds classes and their functions, as for [serial_config()], to this
#' session's registry, which every later [daemons()] call with
#' `serial = NULL` (the default) uses. Registrations accumulate, in order
#' (nothing is de-duplicated, and the first matching class wins). A package
#' may register its classes when mirai loads, with
#' `setHook(packageEvent("mirai", "onLoad"), function(...) mirai::register_serial(...))`.
#'
#' @inheritParams serial_config
#' @return Invisibly, NULL.
#' @examples
#' \donttest{
#' register_serial("my_env_class", function(x) serialize(as.list(x), NULL),
#'                 function(r) list2env(unserialize(r)))
#' daemons(1)
#' daemons(0)
#' }
#' @export
register_serial <- function(class, sfunc, ufunc) {
  cfg <- serial_config(class, sfunc, ufunc)
  reg <- .state$serial
  .state$serial <- if (is.null(reg)) cfg else Map(c, reg, cfg, USE.NAMES = FALSE)
  invisible()
}

# The serialization configuration a profile uses: `serial`, or the session
# registry when NULL; NULL when there is none, or no class in it.
.serial <- function(serial, call) {
  serial <- serial %||% .state$serial
  if (is.null(serial)) return(NULL)
  ok <- is.list(serial) && length(serial) == 3L && is.null(names(serial)) &&
    is.character(serial[[1L]]) && is.list(serial[[2L]]) && is.list(serial[[3L]]) &&
    length(serial[[2L]]) == length(serial[[1L]]) && length(serial[[3L]]) == length(serial[[1L]])
  if (!ok) .abort("`serial` must be a configuration made by serial_config(), or NULL", call)
  if (length(serial[[1L]])) serial
}
