#!/usr/bin/env python3
"""Deterministic example data for scripts/demo.sh.

  example-data.py file V1 V2   a 4 MB "binary" and its next version (code-like records, relocated
                               addresses, inserted and removed functions)
  example-data.py tree V1 V2   an application bundle (libraries, scripts, resources, a symlink) and its
                               next version (a patched library, a changed script, an added and a
                               removed resource)
"""
import os
import random
import sys


def binary(r, size):
    records = [bytes(r.randrange(256) for _ in range(r.randrange(8, 64))) for _ in range(400)]
    out = bytearray()
    while len(out) < size:
        k = r.randrange(4)
        if k == 0:
            out += bytes(r.randrange(256) for _ in range(r.randrange(1, 200)))
        elif k == 1:
            out += r.choice(records)
        elif k == 2:
            out += bytes([r.randrange(256)]) * r.randrange(1, 64)
        else:
            out += bytes(r.randrange(65, 91) for _ in range(r.randrange(1, 32)))
    return out


def next_version(r, data, edits):
    v2 = bytearray(data)
    for _ in range(edits):
        at = r.randrange(len(v2))
        k = r.randrange(3)
        if k == 0:
            v2[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 400)))
        elif k == 1:
            del v2[at:at + r.randrange(1, 400)]
        else:
            for i in range(at, min(at + 64, len(v2)), 4):
                v2[i] = (v2[i] + 16) & 255
    return v2


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def main():
    kind, a, b = sys.argv[1:4]
    r = random.Random(20261129)
    if kind == "file":
        v1 = binary(r, 4_000_000)
        write(a, v1)
        write(b, next_version(r, v1, 300))
        return
    lib = binary(r, 3_000_000)
    ui = binary(r, 1_500_000)
    for root, version in ((a, "1.0.0"), (b, "1.1.0")):
        write(f"{root}/bin/phoenix-dashboard", f"#!/bin/sh\nexec python3 -m dashboard --version {version} \"$@\"\n".encode(), 0o755)
        write(f"{root}/lib/libcore.so", lib if version == "1.0.0" else next_version(random.Random(7), lib, 40), 0o755)
        write(f"{root}/lib/libui.so", ui, 0o755)
        write(f"{root}/share/locale/en.txt", b"hello = Hello\nbye = Goodbye\n")
        write(f"{root}/VERSION", version.encode() + b"\n")
        os.symlink("libcore.so", f"{root}/lib/libcore.so.1")
    write(f"{a}/share/legacy.txt", b"removed in 1.1.0\n")
    write(f"{b}/share/locale/fr.txt", b"hello = Bonjour\nbye = Au revoir\n")


if __name__ == "__main__":
    main()
