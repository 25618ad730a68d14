#!/usr/bin/env python3
"""Command-line shim over the PyPI `hdiffpatch` package (HDiffPatch's C++ library), so that the
benchmark can run it like the other peers: `make OLD NEW PATCH` and `apply OLD PATCH OUT`.
zstd level 21, as `hdiffz -m -c-zstd` uses by default; no self-check of the result (validate=False)."""
import sys

import hdiffpatch


def main() -> int:
    if len(sys.argv) != 5 or sys.argv[1] not in ("make", "apply"):
        print("usage: hdiff_tool.py make OLD NEW PATCH | apply OLD PATCH OUT", file=sys.stderr)
        return 1
    verb, a, b, c = sys.argv[1:]
    with open(a, "rb") as f:
        old = f.read()
    with open(b, "rb") as f:
        second = f.read()
    if verb == "make":
        patch = hdiffpatch.diff(old, second, hdiffpatch.ZStdConfig(level=21, window=24), validate=False)
        with open(c, "wb") as f:
            f.write(patch)
    else:
        with open(c, "wb") as f:
            f.write(hdiffpatch.apply(old, second))
    return 0


if __name__ == "__main__":
    sys.exit(main())
