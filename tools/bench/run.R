# mirai benchmark harness: mirai side by side with parallel (PSOCK) and
# future on the same machine, each measurement in a fresh child R process.
#
#   Rscript tools/bench/run.R [--quick] [--no-dispatcher] [--only=a,b] [--csv=FILE]
#
# --quick          fewer iterations
# --no-dispatcher  skip the mirai runs with dispatcher = TRUE (same as
#                  setting the environment variable MIRAI_BENCH_DISPATCHER=0)
# --only=...       scenarios to run, from: roundtrip,rtdisp,tasks,map,bigvec,
#                  map100k,slowmap,shared,drain,memory,tlsrt,tlsbig
# --csv=FILE     also write the final table as CSV
# --scale          also run the core's scale test (2,000 simulated daemons,
#                  1,000,000 queued tasks: cargo test --ignored), printing
#                  its figures
#
# See README.md in this directory for what each scenario measures.

SCENARIOS <- c("roundtrip", "rtdisp", "tasks", "map", "map100k", "slowmap", "shared",
               "bigvec", "drain", "memory", "tlsrt", "tlsbig")

# Child jobs: scenario and system (names match <scenario>_<system>() in
# scenarios.R). mirai jobs are repeated with dispatcher = TRUE on request.
JOBS <- list(
  c("roundtrip", "mirai"), c("roundtrip", "psock"), c("roundtrip", "future"),
  c("rtdisp", "mirai"),
  c("tasks", "mirai"), c("tasks", "clusterApplyLB"), c("tasks", "parLapply"),
  c("tasks", "future"),
  c("map", "mirai"), c("map", "parLapplyLB"), c("map", "clusterApplyLB"),
  c("map", "future.apply"),
  c("map100k", "mirai"), c("map100k", "parLapply"),
  c("slowmap", "mirai"), c("slowmap", "parLapplyLB"), c("slowmap", "clusterApplyLB"),
  c("shared", "mirai"), c("shared", "once"),
  c("bigvec", "mirai"), c("bigvec", "psock"), c("bigvec", "socketpair"),
  c("drain", "mirai"), c("drain", "clusterApplyLB"),
  c("memory", "mirai"),
  c("tlsrt", "mirai"), c("tlsbig", "mirai")
)

# Table rows: label, mirai job id, peer job id (NA: none), peer label, and
# the target: op, threshold, and on = "ratio" (mirai / peer) or the unit of
# an absolute target on mirai's own value.
cmp <- function(label, mirai, peer, peer_label, op = NA, target = NA,
                on = "ratio") {
  list(label = label, mirai = mirai, peer = peer, peer_label = peer_label,
       op = op, target = target, on = on)
}
ROWS <- list(
  cmp("round trip, 1 daemon", "roundtrip/mirai", "roundtrip/psock",
      "PSOCK clusterCall", "<=", 0.25),
  cmp("round trip, 1 daemon", "roundtrip/mirai", "roundtrip/future",
      "future multisession"),
  cmp("round trip, dispatcher", "roundtrip/mirai+disp", "roundtrip/psock",
      "PSOCK clusterCall", "<=", 0.25),
  cmp("round trip, dispatcher", "roundtrip/mirai+disp", "roundtrip/mirai",
      "mirai dispatcher=FALSE"),
  cmp("round trip, dispatcher / without, interleaved", "rtdisp/mirai", NA,
      "-", "<=", 1.2, on = "x"),
  cmp("20,000 tiny tasks, 2 daemons", "tasks/mirai", "tasks/clusterApplyLB",
      "PSOCK clusterApplyLB"),
  cmp("20,000 tiny tasks, 2 daemons", "tasks/mirai", "tasks/parLapply",
      "PSOCK parLapply"),
  cmp("20,000 tiny tasks, 2 daemons", "tasks/mirai", "tasks/future",
      "future multisession"),
  cmp("20,000 tiny tasks, dispatcher", "tasks/mirai+disp",
      "tasks/clusterApplyLB", "PSOCK clusterApplyLB", ">=", 2),
  cmp("mirai_map 20,000, 2 daemons", "map/mirai", "map/parLapplyLB",
      "PSOCK parLapplyLB"),
  cmp("mirai_map 20,000, 2 daemons", "map/mirai", "map/clusterApplyLB",
      "PSOCK clusterApplyLB"),
  cmp("mirai_map 20,000, 2 daemons", "map/mirai", "map/future.apply",
      "future_lapply"),
  cmp("mirai_map 20,000, dispatcher", "map/mirai+disp", "map/clusterApplyLB",
      "PSOCK clusterApplyLB", ">=", 2),
  cmp("mirai_map 100,000 tiny, 2 daemons", "map100k/mirai", "map100k/parLapply",
      "PSOCK parLapply"),
  cmp("mirai_map 100,000 tiny, dispatcher", "map100k/mirai+disp", "map100k/parLapply",
      "PSOCK parLapply", ">=", 1),
  cmp("mirai_map 1,000 x 10 ms, 2 daemons", "slowmap/mirai", "slowmap/clusterApplyLB",
      "PSOCK clusterApplyLB"),
  cmp("mirai_map 1,000 x 10 ms, dispatcher", "slowmap/mirai+disp",
      "slowmap/clusterApplyLB", "PSOCK clusterApplyLB"),
  cmp("mirai_map 1,000 x 10 ms, dispatcher", "slowmap/mirai+disp",
      "slowmap/parLapplyLB", "PSOCK parLapplyLB"),
  cmp("map of 50 with a 40 MB object", "shared/mirai", "shared/once",
      "object sent once per daemon", "<=", 2),
  cmp("map of 50 with a 40 MB object, dispatcher", "shared/mirai+disp",
      "shared/once+disp", "object sent once per daemon", "<=", 2),
  cmp("100 MB round trip", "bigvec/mirai", "bigvec/psock",
      "PSOCK clusterCall", ">=", 3),
  cmp("100 MB round trip", "bigvec/mirai", "bigvec/socketpair",
      "socketpair echo", ">=", 0.5),
  cmp("100 MB round trip, dispatcher", "bigvec/mirai+disp", "bigvec/psock",
      "PSOCK clusterCall"),
  cmp("100 MB round trip, dispatcher", "bigvec/mirai+disp", "bigvec/socketpair",
      "socketpair echo", ">=", 0.5),
  cmp("drain 200,000 queued tasks", "drain/mirai", "drain/clusterApplyLB",
      "PSOCK clusterApplyLB"),
  cmp("drain 200,000 queued tasks, dispatcher", "drain/mirai+disp",
      "drain/clusterApplyLB", "PSOCK clusterApplyLB", ">=", 2),
  cmp("host memory per queued task", "memory/mirai", NA, "-",
      "<=", 500, on = "B/task"),
  cmp("host memory per queued task, dispatcher", "memory/mirai+disp", NA, "-",
      "<=", 500, on = "B/task"),
  cmp("round trip, tls+tcp / tcp, interleaved", "tlsrt/mirai", NA, "-", on = "x"),
  cmp("100 MB round trip, tls+tcp", "tlsbig/mirai", "bigvec/psock",
      "PSOCK clusterCall (unencrypted)")
)

# --- options ---------------------------------------------------------------

parse_args <- function(args) {
  opt_value <- function(name, default) {
    hit <- grep(paste0("^--", name, "="), args, value = TRUE)
    if (length(hit)) sub("^[^=]*=", "", hit[1]) else default
  }
  env <- tolower(Sys.getenv("MIRAI_BENCH_DISPATCHER", "1"))
  only <- opt_value("only", paste(SCENARIOS, collapse = ","))
  only <- strsplit(only, ",")[[1]]
  bad <- setdiff(only, SCENARIOS)
  if (length(bad)) stop("unknown scenario(s): ", paste(bad, collapse = ", "))
  list(quick = "--quick" %in% args,
       dispatcher = !"--no-dispatcher" %in% args && !env %in% c("0", "false", "no"),
       only = only,
       csv = opt_value("csv", NA))
}

this_dir <- function() {
  file <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE))
  if (length(file)) dirname(normalizePath(file[1])) else "tools/bench"
}

# --- running one child -----------------------------------------------------

job_id <- function(scenario, system, dispatcher) {
  paste0(scenario, "/", system, if (dispatcher) "+disp")
}

# Runs one measurement in a fresh Rscript; returns list(value, unit, note,
# seconds), with value NA and the reason in note on failure or timeout.
run_child <- function(scenario, system, dispatcher, opts) {
  out <- tempfile(fileext = ".rds")
  log <- tempfile(fileext = ".log")
  on.exit(unlink(c(out, log)))
  rscript <- file.path(R.home("bin"), "Rscript")
  args <- c(shQuote(file.path(this_dir(), "scenarios.R")), scenario, system,
            opts$quick, dispatcher, shQuote(out))
  limit <- if (opts$quick) 90 else 180
  t0 <- Sys.time()
  status <- suppressWarnings(
    system2(rscript, args, stdout = log, stderr = log, timeout = limit))
  secs <- as.numeric(Sys.time() - t0, units = "secs")
  if (status == 0L && file.exists(out)) return(c(readRDS(out), seconds = secs))
  why <- if (status == 124L) sprintf("TIMEOUT after %d s", limit) else
    paste0("FAILED (status ", status, "): ", error_message(log))
  list(value = NA, unit = "", note = why, seconds = secs)
}

# The R error from a child's log: from the last "Error" line on, without
# the traceback summary and the daemon start-up progress lines.
error_message <- function(log) {
  lines <- if (file.exists(log)) readLines(log, warn = FALSE) else character()
  noise <- "initial sync|^Calls:|^Execution halted|^\\s*$"
  err <- grep("^Error", lines)
  if (length(err)) lines <- lines[max(err):length(lines)]
  msg <- paste(grep(noise, lines, value = TRUE, invert = TRUE), collapse = " ")
  substr(msg, 1, 200)
}

# --- formatting ------------------------------------------------------------

lower_is_better <- function(unit) unit %in% c("s/call", "B/task", "x", "s")

num <- function(x, ...) trimws(formatC(x, big.mark = ",", ...))

fmt_value <- function(r) {
  if (is.null(r)) return("not run")
  if (is.na(r$value)) return("n/a")
  if (r$unit == "x") return(sprintf("%.2fx", r$value))
  if (r$unit == "s") return(sprintf("%.3f s", r$value))
  if (r$unit == "s/call") {
    v <- r$value * 1e6
    return(paste(num(v, digits = 3, format = "fg"), "us/call"))
  }
  paste(num(r$value, digits = if (r$value >= 100) 0 else 1, format = "f"),
        r$unit)
}

table_row <- function(row, res) {
  m <- res[[row$mirai]]
  p <- if (is.na(row$peer)) NULL else res[[row$peer]]
  has <- function(r) !is.null(r) && !is.na(r$value)
  ratio <- if (has(m) && has(p)) m$value / p$value else NA
  better <- if (!has(m)) "" else if (lower_is_better(m$unit)) "lower" else
    "higher"
  target <- result <- ""
  if (!is.na(row$op)) {
    x <- if (row$on == "ratio") ratio else if (has(m)) m$value else NA
    target <- if (row$on == "ratio") paste0(row$op, " ", row$target, "x") else
      paste(row$op, format(row$target, big.mark = ","), row$on)
    pass <- if (row$op == "<=") x <= row$target else x >= row$target
    result <- if (is.na(x)) "-" else if (pass) "PASS" else "FAIL"
    if (is.null(m) && grepl("\\+disp$", row$mirai)) result <- "(not run)"
    if (has(m) && grepl("dispatcher not active", m$note)) result <- "invalid"
  }
  notes <- c(if (!is.null(m)) m$note, if (!is.null(p)) p$note)
  data.frame(
    benchmark = row$label, mirai = fmt_value(m), peer = row$peer_label,
    peer_value = if (is.na(row$peer)) "-" else fmt_value(p),
    ratio = if (is.na(ratio)) "-" else
      sprintf(if (ratio >= 10) "%.0fx" else if (ratio >= 0.1) "%.2fx" else
        "%.2gx", ratio),
    better = better, target = target, result = result,
    note = paste(notes[nzchar(notes)], collapse = "; "))
}

print_table <- function(tab) {
  header <- c("benchmark", "mirai", "peer", "peer value", "ratio m/p",
              "better", "target", "result", "note")
  cells <- rbind(header, as.matrix(tab))
  widths <- apply(cells, 2, function(col) max(nchar(col)))
  widths[length(widths)] <- 0 # no padding for the last (notes) column
  line <- function(x) {
    padded <- mapply(function(s, w) formatC(s, width = -w), x, widths)
    cat(sub("\\s+$", "", paste(padded, collapse = "  ")), "\n", sep = "")
  }
  line(cells[1, ])
  line(vapply(widths, function(w) strrep("-", max(w, 4)), ""))
  for (i in seq_len(nrow(cells))[-1]) line(cells[i, ])
}

# --- main ------------------------------------------------------------------

header <- function(opts) {
  ver <- function(pkg) tryCatch(as.character(packageVersion(pkg)),
                                error = function(e) "not installed")
  git <- tryCatch(system2("git", c("-C", shQuote(this_dir()), "describe",
                                   "--always", "--dirty"),
                          stdout = TRUE, stderr = FALSE),
                  error = function(e) "?", warning = function(e) "?")
  cat(sprintf("mirai benchmarks, %s run, %s, %d cores\n",
              if (opts$quick) "quick" else "full",
              format(Sys.time(), "%Y-%m-%d %H:%M %Z"), parallel::detectCores()))
  cat(sprintf("%s | mirai %s (git %s) | future %s\n", R.version.string,
              ver("mirai"), git[1], ver("future")))
  cat("load average (1, 5, 15 min):",
      paste(utils::head(scan("/proc/loadavg", what = "", quiet = TRUE), 3),
            collapse = " "), "\n")
  cat("dispatcher = TRUE rows:", if (opts$dispatcher) "on" else
      "off (--no-dispatcher or MIRAI_BENCH_DISPATCHER=0)", "\n\n")
}

main <- function() {
  opts <- parse_args(commandArgs(trailingOnly = TRUE))
  header(opts)
  jobs <- Filter(function(j) j[1] %in% opts$only, JOBS)
  if (opts$dispatcher) {
    # rtdisp measures both settings itself
    # (shared/once is mirai too: the reference of the shared-object map)
    extra <- Filter(function(j) j[2] %in% c("mirai", "once") && j[1] != "rtdisp", jobs)
    jobs <- c(jobs, lapply(extra, function(j) c(j, "disp")))
  }
  res <- list()
  t0 <- Sys.time()
  for (j in jobs) {
    disp <- length(j) == 3L
    id <- job_id(j[1], j[2], disp)
    r <- run_child(j[1], j[2], disp, opts)
    res[[id]] <- r
    runs <- if (length(r$runs) > 1L)
      paste0("runs: ", paste(signif(r$runs, 3), collapse = ", "), "  ") else ""
    cat(sprintf("%-24s %-17s %5.1f s  %s%s\n", id, fmt_value(r), r$seconds,
                runs, r$note))
  }
  rows <- Filter(function(row) sub("/.*", "", row$mirai) %in% opts$only, ROWS)
  tab <- do.call(rbind, lapply(rows, table_row, res = res))
  cat(sprintf(paste("\nTotal %.0f s. ratio = mirai / peer;",
                    "'better' is the direction in which mirai wins.\n\n"),
              as.numeric(Sys.time() - t0, units = "secs")))
  print_table(tab)
  if (!is.na(opts$csv)) utils::write.csv(tab, opts$csv, row.names = FALSE)
  if ("--scale" %in% commandArgs(trailingOnly = TRUE)) run_scale_test()
  invisible(tab)
}

# The dispatcher's scale test, a cargo test kept out of the default run
# (see src/rust/tests/dispatcher.rs): thousands of simulated daemons and a
# million queued tasks, with its own memory and thread figures.
run_scale_test <- function() {
  rust <- normalizePath(file.path(this_dir(), "..", "..", "src", "rust"))
  vendor <- file.path(rust, "vendor")
  if (!dir.exists(vendor))
    stop("unpack src/rust/vendor.tar.xz first (R CMD INSTALL . does)", call. = FALSE)
  r_home <- R.home()
  env <- c(sprintf("R_HOME=%s", r_home), sprintf("LD_LIBRARY_PATH=%s/lib", r_home))
  args <- c("test", "--release", "--offline", "--manifest-path", file.path(rust, "Cargo.toml"),
            "--config", shQuote("source.crates-io.replace-with=\"vendored-sources\""),
            "--config", shQuote(sprintf("source.vendored-sources.directory=\"%s\"", vendor)),
            "--test", "dispatcher", "--", "--ignored", "--nocapture", "scale")
  cat("\nScale test (cargo test --ignored scale):\n")
  system2("cargo", args, env = env)
}

main()
