# cluster_config() with a real scheduler: a single-node Slurm (Debian's
# slurm-wlm and munge) is started for these tests in a private directory,
# with its own munge socket and ports, and stopped at the end. Daemons come
# up as real Slurm jobs; `daemons(0)` must leave no job behind.

slurm_bins <- c("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
skip_if(!all(nzchar(Sys.which(slurm_bins))), "Slurm (slurm-wlm, munge) is not installed")
skip_if(Sys.info()[["effective_user"]] != "root", "a private Slurm needs root here")
skip_if_not_installed("processx")

free_port <- function() url_port(free_tcp_url())

# Starts munged, slurmctld and slurmd in foreground under processx; returns
# the environment the Slurm commands need and a stop function.
start_slurm <- function() {
  dir <- tempfile("slurm")
  dir.create(file.path(dir, "state"), recursive = TRUE)
  dir.create(file.path(dir, "spool"))
  node <- Sys.info()[["nodename"]]
  key <- file.path(dir, "munge.key")
  writeBin(as.raw(sample.int(256L, 1024L, replace = TRUE) - 1L), key)
  Sys.chmod(key, "0600")
  sock <- file.path(dir, "munge.sock")
  conf <- file.path(dir, "slurm.conf")
  writeLines(c(
    "ClusterName=mirai",
    sprintf("SlurmctldHost=%s(127.0.0.1)", node),
    "SlurmUser=root", "SlurmdUser=root",
    sprintf("SlurmctldPort=%d", free_port()),
    sprintf("SlurmdPort=%d", free_port()),
    "AuthType=auth/munge", "CredType=cred/munge",
    sprintf("AuthInfo=socket=%s", sock),
    sprintf("StateSaveLocation=%s/state", dir),
    sprintf("SlurmdSpoolDir=%s/spool", dir),
    sprintf("SlurmctldPidFile=%s/slurmctld.pid", dir),
    sprintf("SlurmdPidFile=%s/slurmd.pid", dir),
    sprintf("SlurmctldLogFile=%s/slurmctld.log", dir),
    sprintf("SlurmdLogFile=%s/slurmd.log", dir),
    "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
    "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
    "SchedulerType=sched/builtin", "MpiDefault=none", "ReturnToService=2",
    "JobAcctGatherType=jobacct_gather/none",
    "AccountingStorageType=accounting_storage/none",
    "InactiveLimit=0", "KillWait=2",
    sprintf("NodeName=%s NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN", node),
    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
  ), conf)
  env <- c(SLURM_CONF = conf)
  run <- function(cmd, args) processx::process$new(
    cmd, args, env = c("current", env), stdout = file.path(dir, paste0(cmd, ".out")),
    stderr = "2>&1", cleanup = TRUE, cleanup_tree = TRUE
  )
  procs <- list(
    munged = run("munged", c("-F", "-f", paste0("--socket=", sock), paste0("--key-file=", key),
                             paste0("--pid-file=", file.path(dir, "munged.pid")),
                             paste0("--log-file=", file.path(dir, "munged.log")),
                             paste0("--seed-file=", file.path(dir, "munge.seed"))))
  )
  wait_for(function() file.exists(sock), timeout = 20)
  procs$slurmctld <- run("slurmctld", c("-D", "-f", conf))
  procs$slurmd <- run("slurmd", c("-D", "-f", conf))
  slurm <- list(dir = dir, env = env, procs = procs)
  ready <- wait_for(function() any(grepl("idle|mix|alloc", slurm_cmd(slurm, "sinfo", c("-h", "-o", "%T")))),
                    timeout = 60, interval = 0.2)
  if (!ready) {
    stop_slurm(slurm)
    skip("the private Slurm did not come up")
  }
  slurm
}

slurm_cmd <- function(slurm, cmd, args = character()) {
  old <- Sys.getenv("SLURM_CONF", unset = NA)
  Sys.setenv(SLURM_CONF = slurm$env[["SLURM_CONF"]])
  on.exit(if (is.na(old)) Sys.unsetenv("SLURM_CONF") else Sys.setenv(SLURM_CONF = old))
  suppressWarnings(system2(cmd, shQuote(args), stdout = TRUE, stderr = TRUE))
}

jobs <- function(slurm) slurm_cmd(slurm, "squeue", c("-h", "-o", "%i|%j|%T"))

stop_slurm <- function(slurm) {
  try(slurm_cmd(slurm, "scancel", c("--full", "--user=root")), silent = TRUE)
  for (p in rev(slurm$procs)) kill_process(p)
  unlink(slurm$dir, recursive = TRUE)
}

slurm <- start_slurm()
withr::defer(stop_slurm(slurm))

slurm_daemons <- function(n, job_name = "mirai") {
  Sys.setenv(SLURM_CONF = slurm$env[["SLURM_CONF"]])
  cfg <- cluster_config(
    command = "sbatch",
    options = sprintf("#SBATCH --job-name=%s\n#SBATCH --output=%s/%%j.out", job_name, slurm$dir)
  )
  daemons(n = n, url = "tcp://127.0.0.1:0", remote = cfg)
}

test_that("daemons through real Slurm jobs run tasks; daemons(0) leaves no job", {
  on.exit({ daemons(0); Sys.unsetenv("SLURM_CONF") })
  slurm_daemons(2)
  expect_true(wait_conn(2, timeout = 120))
  running <- jobs(slurm)
  expect_length(running, 2L)
  expect_true(all(grepl("\\|mirai\\|RUNNING$", running)))
  ids <- sort(as.integer(sub("\\|.*$", "", running)))

  # the tasks ran inside those jobs
  r <- mirai_map(1:6, function(x) c(x = x, job = as.integer(Sys.getenv("SLURM_JOB_ID"))))[.flat]
  expect_identical(unname(r[names(r) == "x"]), 1:6)
  expect_true(all(r[names(r) == "job"] %in% ids))
  expect_identical(status()$mirai[["completed"]], 6L)

  daemons(0)
  expect_true(wait_for(function() length(jobs(slurm)) == 0L, timeout = 30, interval = 0.2))
  expect_length(jobs(slurm), 0L)
})

test_that("a Slurm job cancelled mid-task resolves its task to errorValue 19", {
  on.exit({ daemons(0); Sys.unsetenv("SLURM_CONF") })
  slurm_daemons(1, job_name = "mirai-cancel")
  expect_true(wait_conn(1, timeout = 120))
  job <- sub("\\|.*$", "", jobs(slurm))
  expect_length(job, 1L)
  gate <- new_gate()
  started <- tempfile("started")
  m <- mirai({ file.create(started); f() }, f = gate_fun(gate, secs = 60), started = started)
  expect_true(wait_for(function() file.exists(started), timeout = 60))
  slurm_cmd(slurm, "scancel", job)
  v <- call_mirai(m)$data
  expect_true(is_error_value(v))
  expect_identical(unclass(v)[1L], 19L)
  expect_true(wait_for(function() length(jobs(slurm)) == 0L, timeout = 30, interval = 0.2))
  open_gate(gate)
})
