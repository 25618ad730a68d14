#!/usr/bin/env bash
# Builds HDiffPatch's own command-line tools, hdiffz and hpatchz, from the source distribution of
# the PyPI package `hdiffpatch` (which carries HDiffPatch's C/C++ sources and Makefile), so that the
# peer comparison runs HDiffPatch as its users do: `hdiffz -m -c-zstd` on all its threads and the
# streaming `hpatchz`, not the in-memory, single-threaded Python binding inside an interpreter.
# Needs gcc, g++ and make. Prints the directory holding both binaries.
#   Benchmarks/peers/build-hdiffpatch.sh [DEST]     (default ~/.cache/phoenix-peers/hdiffpatch)
set -euo pipefail
version=2.6.0
sha256=9f0d05ee1784a8223df4ca806c47c4fc0dc2048aabd24e8694730e55a39aa5a6
url=https://files.pythonhosted.org/packages/ac/4b/824ac1078e591f4b71c83016a1e912f1efc431088e69aa3e045d0223cc34/hdiffpatch-$version.tar.gz
dest=${1:-$HOME/.cache/phoenix-peers/hdiffpatch}
# Reused only when built from this version (a stamp written after a build).
if [ -x "$dest/hdiffz" ] && [ -x "$dest/hpatchz" ] && [ "$(cat "$dest/BUILT_FROM" 2>/dev/null)" = "hdiffpatch-$version" ]; then
  echo "$dest"; exit 0
fi
for tool in curl gcc g++ make; do
  command -v "$tool" >/dev/null || { echo "build-hdiffpatch: $tool is needed (apt-get install curl build-essential)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL -o "$work/src.tar.gz" "$url"
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet - || { echo "build-hdiffpatch: checksum mismatch for $url" >&2; exit 1; }
tar xzf "$work/src.tar.gz" -C "$work"
src="$work/hdiffpatch-$version/hdiffpatch/_c_src/HDiffPatch"
# The project's Makefile with its defaults (bundled zstd, lzma, zlib/libdeflate, bzip2, md5; threads
# on), except XXH=0: the source distribution does not include xxHash, which only the directory
# checksum plugins use.
make -C "$src" -j"$(nproc)" XXH=0 hdiffz hpatchz >"$work/build.log" 2>&1 || {
  tail -20 "$work/build.log" >&2; echo "build-hdiffpatch: make failed" >&2; exit 1; }
mkdir -p "$dest"
install -m 0755 "$src/hdiffz" "$src/hpatchz" "$dest/"
echo "hdiffpatch-$version" > "$dest/BUILT_FROM"
echo "$dest"
