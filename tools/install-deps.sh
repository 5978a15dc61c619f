#!/usr/bin/env bash
# Installs what building and testing mirai needs on a Debian bookworm
# machine (run as root): R and the Debian-packaged R packages used by the
# tests and vignettes, and the real peers the tests start (an SSH server,
# iproute2 for network namespaces, openssl for TLS certificates), then
# from CRAN the R packages Debian does not package. Rust (cargo, rustc)
# must already be installed; the crates come vendored with the package.
# Does nothing if all is present.
set -euo pipefail
PKGS="r-base-dev r-cran-testthat r-cran-later r-cran-promises r-cran-cli
      r-cran-knitr r-cran-rmarkdown r-cran-future r-cran-processx xz-utils
      openssh-server openssh-client iproute2 openssl pandoc"
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
