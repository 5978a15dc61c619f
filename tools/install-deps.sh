#!/usr/bin/env bash
# Installs what building and testing mirai needs on a Debian bookworm
# machine (run as root): R and the Debian-packaged R packages used by the
# tests and vignettes, and the real peers the tests start (an SSH server,
# iproute2 for network namespaces, openssl for TLS certificates). Rust
# (cargo, rustc) must already be installed; the crates come vendored with
# the package. Does nothing if all is present.
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
