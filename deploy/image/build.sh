#!/bin/sh
# Builds ipcwatch's container image from a prebuilt binary, offline:
#   deploy/image/build.sh [BINARY] [TAG]
# BINARY defaults to target/release/ipcwatch (built with `cargo build --release` if absent);
# TAG to ipcwatch:VERSION. The engine is $ENGINE, default podman (docker works too), e.g.
#   ENGINE="podman --storage-driver vfs" deploy/image/build.sh
# The staged root (binary and the libraries `ldd` names) is left in $STAGE if set.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
binary=${1:-$top/target/release/ipcwatch}
if [ ! -x "$binary" ] && [ -z "${1:-}" ]; then
    (cd "$top" && cargo build --release --locked)
fi
[ -x "$binary" ] || { echo "build.sh: $binary is not an executable" >&2; exit 2; }
version=$("$binary" --version | sed -n 's/^ipcwatch \([^ ]*\) (revision \([^,]*\), built \(.*\))$/\1 \2 \3/p')
[ -n "$version" ] || { echo "build.sh: $binary --version did not say its version" >&2; exit 2; }
set -- "$@"
read -r VERSION REVISION CREATED <<EOV
$version
EOV
tag=${2:-ipcwatch:$VERSION}
engine=${ENGINE:-podman}

stage=${STAGE:-$(mktemp -d)}
trap '[ -n "${STAGE:-}" ] || rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/usr/bin"
cp "$top/deploy/image/Containerfile" "$stage/"
# Debug info stays in target/; the image carries symbols only (panics still name functions).
if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$binary" "$stage/rootfs/usr/bin/ipcwatch"
else
    cp "$binary" "$stage/rootfs/usr/bin/ipcwatch"
fi
# The shared libraries it links, at the paths the dynamic loader looks in.
for lib in $(ldd "$binary" | awk '/=>/ { print $3 } /^[[:space:]]*\// { print $1 }'); do
    mkdir -p "$stage/rootfs$(dirname "$lib")"
    cp -L "$lib" "$stage/rootfs$lib"
done
# Without a passwd file in the image, user names come from the host's (--path.rootfs).
$engine build --pull=never -f "$stage/Containerfile" \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    -t "$tag" "$stage"
echo "built $tag"
