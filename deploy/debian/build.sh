#!/bin/sh
# Builds the Debian package (target/debian/ipcwatch_VERSION-1_ARCH.deb) with cargo-deb:
#   deploy/debian/build.sh            the release binary (cargo build --release)
#   BINARY=path deploy/debian/build.sh  a binary built already (the test suite's)
# The man pages, completions and the packaged config are generated here from their one
# source (the CLI definition, config/ipcwatch.toml) into target/deb-assets, which
# [package.metadata.deb] in crates/ipcwatch/Cargo.toml installs. Needs cargo-deb
# (`cargo install cargo-deb`).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
command -v cargo-deb >/dev/null 2>&1 || { echo "build.sh: cargo-deb is missing: cargo install cargo-deb" >&2; exit 2; }
if [ -z "${BINARY:-}" ]; then
    cargo build --release --locked -p ipcwatch
    BINARY=$top/target/release/ipcwatch
fi
[ -x "$BINARY" ] || { echo "build.sh: $BINARY is not an executable" >&2; exit 2; }

assets=$top/target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
# Debian ships stripped binaries (debug info belongs in a -dbgsym package).
objcopy --strip-all "$BINARY" "$assets/ipcwatch"
bin=$assets/ipcwatch
# ipcwatch(1) and one page per command, as ipcwatch(1) refers to them.
"$bin" man | gzip -9n > "$assets/man/ipcwatch.1.gz"
for cmd in $("$bin" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && $1 != "help" { print $1 }'); do
    "$bin" man "$cmd" | gzip -9n > "$assets/man/ipcwatch-$cmd.1.gz"
done
"$bin" completions bash > "$assets/completions/ipcwatch"
"$bin" completions zsh > "$assets/completions/_ipcwatch"
"$bin" completions fish > "$assets/completions/ipcwatch.fish"
# The packaged config reads the rules installed beside it, in /etc/ipcwatch/alerts.
sed 's|^rules = .*|rules = "alerts"|' config/ipcwatch.toml > "$assets/ipcwatch.toml"
grep -q '^rules = "alerts"$' "$assets/ipcwatch.toml"
# docs/ as the README links it, beside the README the unit's Documentation= names.
mkdir -p "$assets/docs"
cp docs/*.md "$assets/docs/"

cargo deb -p ipcwatch --no-build --no-strip "$@"
