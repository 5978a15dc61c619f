#!/bin/sh
# Regenerate src/rust/vendor.tar.xz: every crate the Rust engine depends on,
# so that the package builds without network access (see src/Makevars.in).
# Run from anywhere after changing dependencies in src/rust/Cargo.toml.
set -eu

RUST_DIR=$(cd "$(dirname "$0")/../src/rust" && pwd)
command -v cargo >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cd "$RUST_DIR"
[ -f Cargo.lock ] || cargo generate-lockfile
cargo vendor --quiet --manifest-path Cargo.toml "$TMP/vendor" >/dev/null

# Replace a crate's checksum file so cargo accepts the pruned crate:
# an empty "files" map skips per-file checks, "package" keeps the .crate hash.
reset_checksum() {
  pkg=$(sed -n 's/.*"package":"\([0-9a-f]*\)".*/\1/p' "$1/.cargo-checksum.json")
  printf '{"files":{},"package":"%s"}' "$pkg" > "$1/.cargo-checksum.json"
}

cd "$TMP/vendor"
for crate in *; do
  [ -d "$crate" ] || continue
  case $crate in
    # Windows-only crates are never compiled on Linux/macOS (cargo only reads
    # their Cargo.toml to resolve the lockfile): stub out their sources and
    # drop the large import libraries.
    windows_*|windows-sys*|windows-targets*|winapi*)
      rm -rf "$crate/lib" "$crate/src"
      mkdir -p "$crate/src" && : > "$crate/src/lib.rs"
      reset_checksum "$crate" ;;
  esac
  # Test suites, benchmarks and examples are not needed to build dependencies.
  if [ -d "$crate/tests" ] || [ -d "$crate/benches" ] || [ -d "$crate/examples" ]; then
    rm -rf "$crate/tests" "$crate/benches" "$crate/examples"
    reset_checksum "$crate"
  fi
done

cd "$TMP"
tar -cf - vendor | xz -9 > "$RUST_DIR/vendor.tar.xz"
echo "Wrote $RUST_DIR/vendor.tar.xz ($(wc -c < "$RUST_DIR/vendor.tar.xz") bytes, $(ls vendor | wc -l) crates)"
