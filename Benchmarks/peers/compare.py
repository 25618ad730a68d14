#!/usr/bin/env python3
"""Side-by-side benchmark of phoenix-diff against the peer tools on real version pairs.

Runs every tool on every pair, interleaved (the order rotates each round so that no tool always runs
on a warm or a cold machine), several rounds each, and reports the median, min and max wall time, the
patch size, the peak RSS and the cores kept busy (CPU time over wall time) of make and apply, plus
ratios against Debian's bsdiff/bspatch. These
machines are shared and noisy: read the ratios, not the absolute seconds.

Every apply is checked: the output must equal the new file, or the run is reported as FAILED.

The optional `floor` row is not a tool but two lower bounds measured in the same rounds: its make is
libdivsufsort alone on the old file, split and sorted side by side as `--index suffix-array` does
(sort_floor.c: read and sort, no matching, no compression), the least any engine built on that sort
can take; its apply is phoenix-diff applying a
patch from new to itself (read, SHA-256 before, write, SHA-256 after, fsync; nothing to decode), the
least a verified, durable apply of this file can take. Their ratios against bsdiff/bspatch are the
best such an engine could show on this machine.

HDiffPatch runs as its own command-line tools, `hdiffz -m -c-zstd -d` (its default 4 threads; `-d` skips
its self-check, as our make has none) and `hpatchz` (streaming), built from the PyPI package's source
distribution by build-hdiffpatch.sh (found in $HDIFFPATCH_DIR, default ~/.cache/phoenix-peers/hdiffpatch).

Usage:
  Benchmarks/peers/compare.py [--corpus DIR] [--pairs a-numpy,b-ruff] [--runs 3]
                              [--tools phoenix,bsdiff,...] [--out bench-out] [--phoenix PATH]

The corpus comes from ../shared/corpus/make-corpus.sh (default ~/.cache/phoenix-corpus, or
$PHOENIX_CORPUS). Writes OUT/results.md, OUT/results.json and OUT/chart.svg.
"""
import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def window_log(*paths):
    size = max(os.path.getsize(p) for p in paths)
    return max(27, math.ceil(math.log2(max(size, 2))))


LOWMEM_LIMIT = "192M"
HDIFFPATCH_DIR = Path(os.environ.get("HDIFFPATCH_DIR", str(Path.home() / ".cache/phoenix-peers/hdiffpatch")))


def tools(phoenix):
    """name -> (make argv builder, apply argv builder, needs)"""
    hdiffz, hpatchz = str(HDIFFPATCH_DIR / "hdiffz"), str(HDIFFPATCH_DIR / "hpatchz")

    def phoenix_with(*flags):
        """phoenix-diff make with `flags` (the apply is the same for every variant)."""
        return (
            lambda o, n, p: [phoenix, "make", "--quiet", *flags, o, n, p],
            lambda o, p, out: [phoenix, "apply", "--quiet", o, p, out],
            [phoenix],
        )

    return {
        "phoenix": phoenix_with(),
        "phoenix-bsdiff": phoenix_with("--format", "bsdiff"),
        # zstd instead of the default xz: larger patches, faster apply.
        "phoenix-zstd": phoenix_with("--codec", "zstd"),
        # The suffix array whatever the size (`--index suffix-array`; the default sorts only from 4 GiB of old).
        "phoenix-sa": phoenix_with("--index", "suffix-array"),
        # Both indexes, the smaller patch kept (`--index best`).
        "phoenix-best": phoenix_with("--index", "best"),
        # Hash chains whatever the size (`--index hash-chains`; the default below 4 GiB of old).
        "phoenix-chains": phoenix_with("--index", "hash-chains"),
        # The low-memory mode (anchor index, mapped inputs): peak memory capped whatever the file size.
        "phoenix-lowmem": phoenix_with("--memory-limit", LOWMEM_LIMIT),
        "bsdiff": (
            lambda o, n, p: ["bsdiff", o, n, p],
            lambda o, p, out: ["bspatch", o, out, p],
            ["bsdiff", "bspatch"],
        ),
        "hdiffpatch": (
            lambda o, n, p: [hdiffz, "-m", "-c-zstd", "-d", "-f", o, n, p],
            lambda o, p, out: [hpatchz, "-f", o, p, out],
            [hdiffz, hpatchz],
        ),
        "xdelta3": (
            lambda o, n, p: ["xdelta3", "-e", "-9", "-f", "-B", str(1 << min(31, window_log(o, n))), "-s", o, n, p],
            lambda o, p, out: ["xdelta3", "-d", "-f", "-B", str(1 << min(31, window_log(o))), "-s", o, p, out],
            ["xdelta3"],
        ),
        "zstd-patch-from": (
            lambda o, n, p: ["zstd", "-q", "-f", "-19", f"--long={window_log(o, n)}", f"--patch-from={o}", n, "-o", p],
            lambda o, p, out: ["zstd", "-q", "-f", "-d", f"--long={window_log(o)}", f"--patch-from={o}", p, "-o", out],
            ["zstd"],
        ),
    }


def build_sort_floor(work):
    """Compiles sort_floor.c (gcc and libdivsufsort-dev, which the main build needs too)."""
    exe = str(work / "sort-floor")
    subprocess.run(["gcc", "-O2", str(HERE / "sort_floor.c"), "-o", exe, "-ldivsufsort", "-lpthread"], check=True)
    return exe


def timed(argv):
    """Runs argv under /usr/bin/time; returns (seconds, peak RSS bytes, CPU seconds (user + system, all
    threads), returncode, stderr)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "phx-time %M %U %S"] + argv,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        lines = [l.split() for l in Path(tf.name).read_text().splitlines() if l.startswith("phx-time ")]
        rss = int(lines[-1][1]) * 1024 if lines else 0
        cpu = float(lines[-1][2]) + float(lines[-1][3]) if lines else 0.0
    return elapsed, rss, cpu, proc.returncode, proc.stderr.strip()


def same_file(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def fmt_time(values):
    if not values:
        return "n/a"
    med = statistics.median(values)
    # Milliseconds count below a second (applies take tens of them).
    d = 3 if med < 1 else 2
    return f"{med:.{d}f} s ({min(values):.{d}f}–{max(values):.{d}f})"


def fmt_bytes(n):
    if n is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if scale >= 1e6 else f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.environ.get("PHOENIX_CORPUS", str(Path.home() / ".cache/phoenix-corpus")))
    ap.add_argument("--pairs", default="a-numpy,b-ruff,c-pyarrow,e-django-tar")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="phoenix,bsdiff,hdiffpatch,xdelta3,zstd-patch-from")
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    ap.add_argument("--phoenix", default=None, help="phoenix-diff binary (default: build it in release mode)")
    ap.add_argument("--render-only", action="store_true",
                    help="run nothing: write OUT/results.md and OUT/chart.svg again from OUT/results.json "
                         "(dated by that file; --pairs, --runs and --tools must be the run's)")
    args = ap.parse_args()
    if args.render_only:
        out_dir = Path(args.out)
        saved = out_dir / "results.json"
        data = json.loads(saved.read_text())
        # Saved with the versions of what ran ({"versions", "pairs"}), or, before, the pairs alone.
        results, ran = (data["pairs"], data["versions"]) if "pairs" in data else (data, "not recorded")
        write_markdown(out_dir / "results.md", results, args, ran, args.corpus, when=saved.stat().st_mtime)
        write_chart(out_dir / "chart.svg", results)
        print((out_dir / "results.md").read_text())
        return

    phoenix = args.phoenix
    if phoenix is None:
        # As shipped: the Swift runtime linked in (no runtime libraries to find and load at start).
        build = ["swift", "build", "-c", "release", "--static-swift-stdlib"]
        subprocess.run(build + ["--product", "phoenix-diff"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        bin_dir = subprocess.run(build + ["--show-bin-path"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
        phoenix = str(Path(bin_dir) / "phoenix-diff")

    table = tools(phoenix)
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in wanted:
        if t == "floor":
            if shutil.which("gcc") is None:
                sys.exit("the floor row needs gcc and libdivsufsort-dev (apt-get install gcc libdivsufsort-dev)")
            continue
        if t not in table:
            sys.exit(f"unknown tool {t}; known: {', '.join(table)}")
        for need in table[t][2]:
            if shutil.which(need) is None and not Path(need).exists():
                how = ("Benchmarks/peers/build-hdiffpatch.sh builds it" if t == "hdiffpatch"
                       else "scripts/setup-debian.sh installs the peers")
                sys.exit(f"{t} needs {need}, which is not installed ({how})")

    corpus = Path(args.corpus)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    for p in pairs:
        if not (corpus / "pairs" / p / "old").is_file():
            sys.exit(f"pair {p} not found under {corpus}/pairs (run ../shared/corpus/make-corpus.sh; it needs pip and unzip)")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    try:
        if "floor" in wanted:
            sort_floor = build_sort_floor(work)
        for pair in pairs:
            old = str(corpus / "pairs" / pair / "old")
            new = str(corpus / "pairs" / pair / "new")
            if "floor" in wanted:
                # Made once, untimed: the floor's apply turns new into new.
                identity = str(work / f"{pair}.identity.patch")
                subprocess.run([phoenix, "make", "--quiet", new, new, identity], check=True)
                table["floor"] = (lambda o, n, p: [sort_floor, o],
                                  lambda o, p, out, new=new, identity=identity: [phoenix, "apply", "--quiet", new, identity, out],
                                  [])
            results[pair] = {t: {"make": [], "apply": [], "make_rss": [], "apply_rss": [], "make_cpu": [],
                                 "apply_cpu": [], "size": None, "ok": True, "error": ""} for t in wanted}
            # A fresh order each round (seeded, so a run can be repeated): no tool always follows the same one.
            shuffle = random.Random(f"{pair}")
            for rnd in range(args.runs):
                order = list(wanted)
                shuffle.shuffle(order)
                for t in order:
                    make, apply, _ = table[t]
                    r = results[pair][t]
                    patch = str(work / f"{pair}.{t}.patch")
                    out = str(work / f"{pair}.{t}.out")
                    # A tool that exits 0 without writing must not be scored on the last round's patch.
                    Path(patch).unlink(missing_ok=True)
                    secs, rss, cpu, code, err = timed(make(old, new, patch))
                    if code != 0 or (t != "floor" and not os.path.exists(patch)):
                        r["ok"], r["error"] = False, f"make failed (exit {code}, patch written: {os.path.exists(patch)}): {err[-300:]}"
                        continue
                    r["make"].append(secs)
                    r["make_rss"].append(rss)
                    r["make_cpu"].append(cpu)
                    r["size"] = os.path.getsize(patch) if t != "floor" else None
                    secs, rss, cpu, code, err = timed(apply(old, patch, out))
                    if code != 0 or not same_file(out, new):
                        r["ok"], r["error"] = False, f"apply failed or wrong output: {err[-300:]}"
                        continue
                    r["apply"].append(secs)
                    r["apply_rss"].append(rss)
                    r["apply_cpu"].append(cpu)
                    os.unlink(out)
                    size = f"{r['size']} bytes" if r["size"] is not None else "no patch"
                    print(f"{pair} round {rnd + 1}/{args.runs} {t}: make {r['make'][-1]:.2f} s, "
                          f"{size}, apply {r['apply'][-1]:.3f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ran = versions(phoenix)
    write_markdown(out_dir / "results.md", results, args, ran, corpus)
    (out_dir / "results.json").write_text(json.dumps({"versions": ran, "pairs": results}, indent=2))
    write_chart(out_dir / "chart.svg", results)
    print((out_dir / "results.md").read_text())


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def versions(phoenix):
    """What ran: the tools' own version strings and this repository's commit."""
    def first_line(argv, stream="stdout"):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (p.stdout + p.stderr) if stream == "both" else p.stdout
            return text.strip().splitlines()[0] if text.strip() else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    bsdiff = first_line(["dpkg-query", "-W", "-f", "${Version}", "bsdiff"])
    hdiff = first_line([str(HDIFFPATCH_DIR / "hdiffz"), "-v"], "both")
    xdelta = first_line(["xdelta3", "-V"], "both").split(",")[0]
    zstd = "zstd " + first_line(["zstd", "-V"]).split(",")[0].split()[-1]
    return (f"phoenix-diff at {commit} ({phoenix}); Debian bsdiff {bsdiff}; {hdiff} (built by "
            f"build-hdiffpatch.sh); {xdelta}; {zstd}")


def write_markdown(path, results, args, ran, corpus, when=None):
    lines = [
        "# Peer comparison",
        "",
        f"Command: `Benchmarks/peers/compare.py --pairs {args.pairs} --runs {args.runs} --tools {args.tools}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))}. Times are medians (min–max) of "
        f"{args.runs} interleaved runs. `x faster` and `x smaller` compare each row with Debian's bsdiff 4.3 "
        "(make, patch size) and bspatch (apply). `cores` is CPU time (user and system, all threads) over wall "
        "time, the median of the runs: how many cores the tool kept busy. Peak RSS is the largest of the runs "
        "(`/usr/bin/time`'s maximum resident set). MB = 10^6 bytes, KB = 10^3.",
        "",
        f"Versions: {ran}",
        "",
    ]
    if "floor" in [t.strip() for t in args.tools.split(",")]:
        lines[-2:-2] = ["`floor` is not a tool but two lower bounds from the same rounds: make = libdivsufsort alone on "
                        "the old file (the sort the suffix-array index starts with, in the same parts on the same cores; hash chains need no sort), apply = phoenix-diff applying "
                        "a patch from new to itself (read, SHA-256, write, SHA-256, fsync; nothing to decode).", ""]
    for pair, rows in results.items():
        src = Path(corpus) / "pairs" / pair / "SOURCE.txt"
        label = src.read_text().splitlines()[-1] if src.exists() else pair
        new_size = os.path.getsize(Path(corpus) / "pairs" / pair / "new")
        lines += [f"## {pair}: {label} (new file {fmt_bytes(new_size)})", "",
                  "| tool | make | make cores | patch | make peak RSS | apply | apply cores | apply peak RSS | make x faster | x smaller | apply x faster |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        base = rows.get("bsdiff")
        for tool, r in rows.items():
            if not r["ok"]:
                lines.append(f"| {tool} | FAILED: {r['error']} | | | | | | | | | |")
                continue
            def ratio(key_base, key):
                if not base or not base["ok"] or not base[key_base] or not r[key]:
                    return "n/a"
                return f"{statistics.median(base[key_base]) / statistics.median(r[key]):.1f}"
            size_ratio = (f"{base['size'] / r['size']:.2f}" if base and base["ok"] and base["size"] and r["size"]
                          else "n/a")
            def cores(key):
                # Results saved before CPU time was measured have none.
                pairs = [c / w for c, w in zip(r.get(f"{key}_cpu", []), r[key]) if w > 0]
                return f"{statistics.median(pairs):.2f}" if pairs else "n/a"
            lines.append(
                f"| {tool} | {fmt_time(r['make'])} | {cores('make')} | {fmt_bytes(r['size'])} | "
                f"{fmt_bytes(max(r['make_rss']) if r['make_rss'] else None)} | {fmt_time(r['apply'])} | {cores('apply')} | "
                f"{fmt_bytes(max(r['apply_rss']) if r['apply_rss'] else None)} | {ratio('make', 'make')} | "
                f"{size_ratio} | {ratio('apply', 'apply')} |")
        lines.append("")
    Path(path).write_text("\n".join(lines))


def log_ticks(lo, hi):
    """Tick values for a log axis over [lo, hi]: 1-2-5 steps of each decade (only the 1s when that
    gives more than six), or the two ends and their geometric middle when no such step falls inside."""
    steps = [m * 10 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    ticks = [v for v in steps if lo <= v <= hi]
    if len(ticks) > 6:
        ticks = [v for v in ticks if f"{v:g}".lstrip("0.").startswith("1")]
    if len(ticks) < 2:
        ticks = [lo * 1.2, math.sqrt(lo * hi), hi / 1.2]
    return ticks


def write_chart(path, results):
    """A panel per pair and measure: patch size (y) against make time (top row) and against apply
    time (bottom row), a dot per tool, both axes log-scaled (so equal ratios are equal distances)."""
    colors = {"phoenix": "#d9480f", "phoenix-bsdiff": "#f59f00", "phoenix-lowmem": "#e64980", "phoenix-zstd": "#c2255c", "phoenix-chains": "#ae3ec9", "phoenix-sa": "#0b7285", "phoenix-best": "#862e9c", "bsdiff": "#1c7ed6", "hdiffpatch": "#2f9e44",
              "xdelta3": "#7048e8", "zstd-patch-from": "#495057"}
    pw, ph, pad, right = 360, 260, 72, 16
    pairs = list(results)
    rows = ["make", "apply"]
    width = pw * max(1, len(pairs))
    height = ph * len(rows) + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for row, measure in enumerate(rows):
        for i, pair in enumerate(pairs):
            x0, y0 = i * pw, row * ph
            pts = [(t, statistics.median(r[measure]), r["size"]) for t, r in results[pair].items()
                   if r["ok"] and r.get(measure) and statistics.median(r[measure]) > 0 and r["size"]]
            if not pts:
                continue
            tmin, tmax = min(p[1] for p in pts) / 1.4, max(p[1] for p in pts) * 1.4
            smin, smax = min(p[2] for p in pts) / 1.3, max(p[2] for p in pts) * 1.3
            top, bottom = y0 + 30, y0 + ph - 40

            def sx(t):
                return x0 + pad + (math.log(t) - math.log(tmin)) / (math.log(tmax) - math.log(tmin)) * (pw - pad - right)

            def sy(s):
                return bottom - (math.log(s) - math.log(smin)) / (math.log(smax) - math.log(smin)) * (bottom - top)
            svg.append(f'<text x="{x0 + pw / 2}" y="{y0 + 18}" text-anchor="middle" font-weight="bold">{pair}: {measure}</text>')
            for s in log_ticks(smin, smax):
                svg.append(f'<line x1="{x0 + pad}" y1="{sy(s):.1f}" x2="{x0 + pw - right}" y2="{sy(s):.1f}" stroke="#e9ecef"/>'
                           f'<text x="{x0 + pad - 4}" y="{sy(s) + 4:.1f}" text-anchor="end">{fmt_bytes(int(s))}</text>')
            for t in log_ticks(tmin, tmax):
                svg.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{bottom}" stroke="#e9ecef"/>'
                           f'<text x="{sx(t):.1f}" y="{bottom + 14}" text-anchor="middle">{t:.2g}</text>')
            svg.append(f'<line x1="{x0 + pad}" y1="{bottom}" x2="{x0 + pw - right}" y2="{bottom}" stroke="#333"/>')
            svg.append(f'<line x1="{x0 + pad}" y1="{top}" x2="{x0 + pad}" y2="{bottom}" stroke="#333"/>')
            svg.append(f'<text x="{x0 + pad + (pw - pad - right) / 2}" y="{bottom + 30}" text-anchor="middle">'
                       f'{measure} time (s, log scale)</text>')
            mid = (top + bottom) / 2
            svg.append(f'<text x="{x0 + 12}" y="{mid}" transform="rotate(-90 {x0 + 12} {mid})" '
                       f'text-anchor="middle">patch size (log scale)</text>')
            # Ours last, ringed, so that no peer's dot hides it.
            for tool, t, s in sorted(pts, key=lambda p: p[0] == "phoenix"):
                c = colors.get(tool, "#000")
                ring = ' stroke="#000" stroke-width="1.5"' if tool == "phoenix" else ""
                svg.append(f'<circle cx="{sx(t):.1f}" cy="{sy(s):.1f}" r="5" fill="{c}"{ring}><title>{tool}: {t:.3g} s, '
                           f'{s} bytes</title></circle>')
    lx = 10
    for tool, c in colors.items():
        if any(tool in results[p] for p in pairs):
            ring = ' stroke="#000" stroke-width="1.5"' if tool == "phoenix" else ""
            svg.append(f'<circle cx="{lx + 5}" cy="{height - 15}" r="5" fill="{c}"{ring}/>'
                       f'<text x="{lx + 14}" y="{height - 11}">{tool}</text>')
            lx += 30 + 7 * len(tool)
    svg.append("</svg>")
    Path(path).write_text("\n".join(svg))


if __name__ == "__main__":
    main()
