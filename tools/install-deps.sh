#!/usr/bin/env bash
# Installs what building and testing mirai needs on a Debian bookworm
# machine (run as root): R and the Debian-packaged R packages used by the
# tests and vignettes; the real peers the tests start (an SSH server,
# iproute2 for network namespaces, openssl for TLS certificates, Slurm and
# munge for a private single-node scheduler, Chromium for the Shiny test);
# from CRAN the R packages Debian lacks or has too old for the ecosystem
# tests (promises, Shiny, purrr, ...); and from npm playwright-core, which
# drives Debian's Chromium. Rust (cargo, rustc) must already be installed;
# the crates come vendored with the package. Does nothing if all is present.
set -euo pipefail
PKGS="r-base-dev r-cran-testthat r-cran-later r-cran-promises r-cran-cli
      r-cran-knitr r-cran-rmarkdown r-cran-future r-cran-processx xz-utils
      openssh-server openssh-client iproute2 openssl pandoc
      r-cran-shiny r-cran-purrr r-cran-httpuv r-cran-rcpp r-cran-jsonlite
      r-cran-foreach r-cran-doparallel r-cran-iterators r-cran-rlang
      chromium chromium-driver nodejs libcurl4-openssl-dev slurm-wlm munge
      libprotobuf-dev protobuf-compiler cmake r-cran-roxygen2 python3
      python3-websockets"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS
fi

# CRAN packages with no Debian build (small, compiled in seconds)
CRAN="secretbase"
Rscript -e 'pkgs <- strsplit(commandArgs(TRUE), " ")[[1L]]
missing <- pkgs[!vapply(pkgs, requireNamespace, logical(1L), quietly = TRUE)]
if (length(missing)) {
  message("installing from CRAN: ", paste(missing, collapse = " "))
  install.packages(missing, repos = "https://cloud.r-project.org", quiet = TRUE)
  ok <- vapply(missing, requireNamespace, logical(1L), quietly = TRUE)
  if (!all(ok)) stop("could not install: ", paste(missing[!ok], collapse = " "))
}' "$CRAN"

# CRAN releases the ecosystem tests drive (the Debian builds above are
# older): installed, or upgraded, only where below the version needed.
# (future.mirai, which imports mirai, is installed by .ci/run next to the
# mirai it builds, without dependencies so CRAN's mirai is never pulled in.)
# (otelsdk, which records the OpenTelemetry spans the tests check, builds
# the OpenTelemetry C++ SDK: minutes of compiling, on both cores; .ci/run
# sets MIRAI_DEPS_OTELSDK=0 and builds it beside the Rust build instead)
OTELSDK=otelsdk
[ "${MIRAI_DEPS_OTELSDK:-1}" = 0 ] && OTELSDK=
MAKEFLAGS="-j$(nproc)" Rscript "$(dirname "$0")/install-r-deps.R" later promises=1.3.0 shiny=1.8.1 bslib \
  purrr=1.1.0 carrier foreach doParallel nanoarrow otel processx jsonlite \
  future=1.49.0 parallelly globals $OTELSDK

# playwright-core (no browser download: it drives /usr/bin/chromium)
BROWSER="$(dirname "$0")/browser"
if [ -f "$BROWSER/package-lock.json" ] && [ ! -d "$BROWSER/node_modules" ]; then
  (cd "$BROWSER" && npm ci --no-audit --no-fund --loglevel=error)
fi
