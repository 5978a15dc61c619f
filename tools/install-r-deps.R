# Installs from CRAN the R packages the ecosystem tests drive (promises,
# Shiny, purrr, parallel/foreach, future.mirai, nanoarrow, otel), and
# upgrades only those already-installed packages (often older Debian
# builds) whose version is below what some package in the set requires.
# Packages already recent enough are left alone, so a second run does
# nothing. Usage: Rscript tools/install-r-deps.R pkg[=min] ...
#   pkg=min    install or upgrade pkg unless version >= min is installed
#   pkg@nodeps install pkg (if missing) without its dependencies
args <- commandArgs(TRUE)
repos <- "https://cloud.r-project.org"
nodeps <- sub("@nodeps$", "", grep("@nodeps$", args, value = TRUE))
wanted <- grep("@nodeps$", args, value = TRUE, invert = TRUE)
mins <- setNames(sub("^[^=]*=?", "", wanted), sub("=.*$", "", wanted))

installed_version <- function(p) {
  v <- tryCatch(utils::packageVersion(p), error = function(e) NULL)
  if (is.null(v)) NA_character_ else as.character(v)
}
too_old <- function(p, min) {
  have <- installed_version(p)
  is.na(have) || (nzchar(min) && utils::compareVersion(have, min) < 0L)
}

db <- utils::available.packages(repos = repos)
base <- rownames(utils::installed.packages(priority = c("base", "recommended")))
fields <- c("Depends", "Imports", "LinkingTo")

# every (package, minimum version) pair required in the closure of the set
todo <- names(mins)
seen <- character()
while (length(todo)) {
  p <- todo[1L]
  todo <- todo[-1L]
  if (p %in% seen || !p %in% rownames(db)) next
  seen <- c(seen, p)
  for (f in fields) {
    spec <- db[p, f]
    if (is.na(spec)) next
    for (d in trimws(strsplit(gsub("\n", " ", spec), ",")[[1L]])) {
      name <- sub("[ (].*$", "", d)
      if (name %in% c("R", base, nodeps) || !nzchar(name)) next
      min <- if (grepl(">=", d)) sub(".*>=\\s*([^) ]+).*", "\\1", d) else ""
      old <- if (name %in% names(mins)) mins[[name]] else ""
      if (!nzchar(old) || (nzchar(min) && utils::compareVersion(min, old) > 0L)) {
        mins[[name]] <- min
      }
      todo <- c(todo, name)
    }
  }
}

outdated <- function() names(mins)[vapply(names(mins), function(p) too_old(p, mins[[p]]), NA)]
need <- outdated()
if (length(need)) {
  message("installing from CRAN: ", paste(need, collapse = " "))
  utils::install.packages(need, repos = repos, dependencies = FALSE, quiet = TRUE,
                          Ncpus = 2L)
}
for (p in nodeps) {
  if (is.na(installed_version(p))) {
    message("installing from CRAN without dependencies: ", p)
    utils::install.packages(p, repos = repos, dependencies = FALSE, quiet = TRUE)
  }
}
bad <- c(outdated(),
         nodeps[is.na(vapply(nodeps, installed_version, ""))])
if (length(bad)) stop("could not install: ", paste(bad, collapse = " "))
