#!/bin/sh
# Rebuilds ipcwatch.bpf.o from ipcwatch.bpf.c with Debian's clang and libbpf-dev
# (apt-get install clang llvm libbpf-dev). The object is committed, so building ipcwatch needs
# neither; crates/probes/tests/rebuild.rs checks that this script's object matches it.
# Usage: build.sh [OUTPUT]   (default: ipcwatch.bpf.o beside this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/ipcwatch.bpf.o}
arch=$(uname -m)
case "$arch" in
    x86_64) target=x86 ;;
    aarch64) target=arm64 ;;
    *) target=$arch ;;
esac
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# Built from inside the folder with a relative name, so no path of this machine ends up in
# the object's BTF; DWARF is stripped, BTF (which CO-RE needs) is kept.
cd "$here"
clang -O2 -g -target bpf -fdebug-prefix-map="$here"=. -D__TARGET_ARCH_"$target" -I/usr/include/"$arch"-linux-gnu \
    -c ipcwatch.bpf.c -o "$tmp"
llvm-strip -g "$tmp" -o "$out"
