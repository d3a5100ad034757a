"""Static SASS evidence for the CUDA kernels: instructions per output element, without a GPU.

    python scripts/sass_report.py [--arch sm_90] [--out benchmarks/results/sass_sm90.md] [--tag after]

Method (also written into the report):
  1. every csrc/cuda/*.cu is compiled with nvcc -cubin for the arch (the flags of setup.py plus
     -lineinfo), ptxas -v giving each kernel's registers, stack frame and spill bytes;
  2. nvdisasm -c -gi disassembles each cubin with source line information;
  3. per kernel, the control-flow graph of the SASS is built (branch targets, predicated branches
     fall through, CALL.REL adds its subroutine's longest path, EXIT/RET end a path); a loop is a
     backward branch; its cost per iteration is the length (in instructions, NOPs excluded) of
     the shortest and the longest path from its head to a backward branch, inner loops taken
     once, i.e. the instructions one thread issues per iteration;
  4. the loops that matter carry a marker comment `// sass-loop: NAME fp32=E` in the source:
     NAME labels the loop, E is the number of output elements (forward) or window voxels
     (backward) one iteration of the fp32 / 32-bit-index instantiation handles; the
     instructions per element are the path length divided by E;
  5. for the TSM workload (benchmarks/workloads.py tsm_workload) the share of its cubes on each
     path (interior, 16-byte-aligned x start) is computed from the workload's own centres, and
     the longest-path instructions are compared with the H200's issue rate and memory bandwidth
     (the assumed figures are printed with the result).
A SASS instruction here is one warp instruction per 32 threads, so "instructions per element"
is per-thread instructions divided by the elements a thread handles per iteration.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from adafocus.utils.files import atomic_write  # noqa: E402

# H200 SXM: 132 SMs, 4 warp schedulers per SM issuing one warp instruction per clock each,
# 1.98 GHz boost clock, 4.8 TB/s HBM3e (NVIDIA's datasheet).
H200_SMS, H200_ISSUE_PER_SM, H200_CLOCK_HZ, H200_BYTES_PER_S = 132, 4, 1.98e9, 4.8e12

MARKER = re.compile(r"//\s*sass-loop:\s*(\S+)\s+fp32=(\d+)")
INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z0-9_.]+)(.*?);")
FILE_LINE = re.compile(r'//## File "([^"]+)", line (\d+)')
LABEL = re.compile(r"^(\.L_x_\d+|\$[\w$]+):\s*$")
TARGET = re.compile(r"`\(([^)]+)\)")


@dataclass
class Instr:
    offset: int
    predicated: bool
    opcode: str
    operands: str
    lines: frozenset  # (file, line) of every inline level


@dataclass
class Function:
    name: str
    instrs: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # label -> instruction index


def find_tool(name: str) -> str:
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates = [os.path.join(cuda_home, "bin", name), shutil.which(name) or ""]
    try:  # triton ships cuobjdump/nvdisasm
        import triton

        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name))
    except ImportError:
        pass
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise SystemExit(f"sass_report: {name} not found (looked in {candidates}); set CUDA_HOME")


def include_flags() -> list:
    from torch.utils.cpp_extension import include_paths

    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    return [f"-I{p}" for p in [os.path.join(ROOT, "csrc")] + include_paths() + [os.path.join(cuda_home, "include")]]


def compile_cubin(source: str, arch: str, out: str) -> str:
    cmd = [find_tool("nvcc"), "-cubin", f"-arch={arch}", "-O3", "-std=c++20", "--expt-relaxed-constexpr",
           "-lineinfo", "-Xptxas", "-v", "-DCUBECROP_WITH_CUDA", *include_flags(), "-o", out, source]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"sass_report: nvcc failed on {source}:\n{res.stderr[-4000:]}")
    return res.stderr


def parse_ptxas(log: str) -> dict:
    """function -> dict(registers, stack, spill_stores, spill_loads)."""
    stats, current = {}, None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = m.group(1)
            stats[current] = {}
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            stats[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            stats[current]["registers"] = int(m.group(1))
    return stats


def parse_sass(text: str) -> dict:
    functions, fn, pending_lines = {}, None, []
    for raw in text.splitlines():
        m = re.match(r"\s*\.section\s+\.text\.(\S+?),", raw)
        if m:
            fn = Function(m.group(1))
            functions[fn.name] = fn
            continue
        if fn is None:
            continue
        m = FILE_LINE.search(raw)
        if m:
            pending_lines.append((os.path.realpath(m.group(1)), int(m.group(2))))
            continue
        m = LABEL.match(raw.strip())
        if m:
            fn.labels[m.group(1)] = len(fn.instrs)
            continue
        m = INSTR.search(raw)
        if m:
            fn.instrs.append(Instr(int(m.group(1), 16), bool(m.group(2)), m.group(3), m.group(4),
                                   frozenset(pending_lines)))
            if not pending_lines and fn.instrs[:-1]:
                fn.instrs[-1].lines = fn.instrs[-2].lines
            pending_lines = []
    return functions


def successors(fn: Function, i: int) -> list:
    ins = fn.instrs[i]
    op = ins.opcode
    if op.startswith("BRA") or op.startswith("JMP"):
        t = TARGET.search(ins.operands)
        targets = [fn.labels[t.group(1)]] if t and t.group(1) in fn.labels else []
        return targets + ([i + 1] if ins.predicated and i + 1 < len(fn.instrs) else [])
    if op.startswith("EXIT") or op.startswith("RET") or op.startswith("BRX") or op.startswith("JMX"):
        return [i + 1] if ins.predicated and i + 1 < len(fn.instrs) else []
    return [i + 1] if i + 1 < len(fn.instrs) else []


def subroutine_cost(fn: Function, start: int, memo: dict) -> int:
    """Longest path from a CALL.REL target to its RET (the integer-division helpers)."""
    if start in memo:
        return memo[start]
    memo[start] = 0
    best = {}
    order = list(range(start, len(fn.instrs)))
    for i in reversed(order):
        ins = fn.instrs[i]
        own = 0 if ins.opcode == "NOP" else 1
        if ins.opcode.startswith("RET"):
            best[i] = own
            continue
        nxt = [s for s in successors(fn, i) if s > i and s in best]
        best[i] = own + max((best[s] for s in nxt), default=-10**9)
    memo[start] = max(best.get(start, 0), 0)
    return memo[start]


def cost(fn: Function, i: int, memo: dict) -> int:
    ins = fn.instrs[i]
    if ins.opcode == "NOP":
        return 0
    if ins.opcode.startswith("CALL"):
        t = TARGET.search(ins.operands)
        if t and t.group(1) in fn.labels:
            return 1 + subroutine_cost(fn, fn.labels[t.group(1)], memo)
    return 1


@dataclass
class Loop:
    head: int
    latches: set
    shortest: int = 0
    longest: int = 0
    label: str = ""
    per_iteration: int = 0

    @property
    def end(self) -> int:
        return max(self.latches)


def find_loops(fn: Function) -> list:
    subroutine_starts = [i for name, i in fn.labels.items() if name.startswith("$")]
    first_sub = min(subroutine_starts, default=len(fn.instrs))
    heads = collections.defaultdict(set)
    for i in range(first_sub):
        for s in successors(fn, i):
            if s <= i:
                heads[s].add(i)
    memo: dict = {}
    loops = []
    for head, latches in sorted(heads.items()):
        loop = Loop(head, latches)
        lo, hi = head, loop.end
        longest, shortest = {}, {}
        for i in range(hi, lo - 1, -1):
            c = cost(fn, i, memo)
            nxt = [s for s in successors(fn, i) if i < s <= hi]
            ends_here = i in latches
            cands_long = [longest[s] for s in nxt if longest.get(s) is not None]
            cands_short = [shortest[s] for s in nxt if shortest.get(s) is not None]
            if ends_here:
                cands_long.append(0)
                cands_short.append(0)
            longest[i] = c + max(cands_long) if cands_long else None
            shortest[i] = c + min(cands_short) if cands_short else None
        loop.longest = longest.get(head) or 0
        loop.shortest = shortest.get(head) or 0
        loops.append(loop)
    return loops


def read_markers() -> dict:
    markers = {}
    for path in glob.glob(os.path.join(ROOT, "csrc", "**", "*"), recursive=True):
        if not path.endswith((".cu", ".cuh", ".h")):
            continue
        with open(path) as f:
            for n, line in enumerate(f, 1):
                m = MARKER.search(line)
                if m:
                    markers[(os.path.realpath(path), n)] = (m.group(1), int(m.group(2)))
    return markers


def label_loops(fn: Function, loops: list, markers: dict) -> None:
    # A marker names the loop whose backward branch comes from the marked line (the largest
    # when the compiler made several disjoint versions of it, e.g. one for zero inner trips), else the
    # innermost loop (with a path through it) holding instructions of that line.
    live = [l for l in loops if l.longest > 0]
    for key, (name, per) in sorted(markers.items()):
        latched = [l for l in live if not l.label and any(key in fn.instrs[i].lines for i in l.latches)]
        holding = [l for l in live if not l.label and any(key in ins.lines for ins in fn.instrs[l.head:l.end + 1])]
        # Of nested candidates the innermost (an outer loop's branch can carry the line too).
        latched = [l for l in latched
                   if not any(o is not l and l.head <= o.head and o.end <= l.end for o in latched)]
        if latched:
            loop = max(latched, key=lambda l: l.end - l.head)
        elif holding:
            loop = min(holding, key=lambda l: l.end - l.head)
        else:
            continue
        loop.label, loop.per_iteration = name, per


def demangle(names: list) -> dict:
    res = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    return dict(zip(names, res.stdout.splitlines())) if res.returncode == 0 else {n: n for n in names}


def short_name(demangled: str) -> str:
    s = re.sub(r"cubecrop::cuda::\(anonymous namespace\)::", "", demangled)
    s = s.replace("c10::", "").replace("cubecrop::cuda_items::", "")
    return s.split("(")[0]


def is_fp32_int32(demangled: str) -> bool:
    m = re.search(r"<(.*)>\(", demangled)
    args = [a.strip() for a in m.group(1).split(",")] if m else []
    types = [a for a in args if a not in ("true", "false") and not a.lstrip("-").isdigit()]
    return "int" in types and all(a in ("float", "int") for a in types)


def tsm_paths() -> dict:
    """Fractions of the TSM workload's cubes taking each forward path (the workload's own centres)."""
    import torch

    from benchmarks.workloads import tsm_workload

    w = tsm_workload()
    extents = torch.tensor(w.video.shape[2:], dtype=torch.float64)
    size = torch.tensor(w.size, dtype=torch.float64)
    s = w.centers.to(torch.float64) - size / 2
    f = torch.floor(s)
    interior = ((f >= 0) & (f + size < extents)).all(dim=-1)
    aligned = (f[..., 2] % 4 == 0)
    n, k = w.centers.shape[:2]
    c = w.video.shape[1]
    outputs = n * k * c * int(torch.prod(size))
    window = n * k * c * int(torch.prod(size + 1))
    return {
        "shape": tuple(w.video.shape), "size": tuple(w.size), "k": k, "outputs": outputs, "window": window,
        "interior": float(interior.double().mean()), "aligned": float(aligned.double().mean()),
        "interior_aligned": float((interior & aligned).double().mean()),
        "video_bytes": w.video.numel() * 4,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "sass_sm90.md"))
    ap.add_argument("--tag", default="current", help="section title, e.g. before / after")
    ap.add_argument("--append", action="store_true", help="keep the report's other sections")
    args = ap.parse_args(argv)

    markers = read_markers()
    nvdisasm = find_tool("nvdisasm")
    kernels = []  # (file, demangled, stats, loops, n_instr)
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
            cubin = os.path.join(tmp, os.path.basename(source) + ".cubin")
            stats = parse_ptxas(compile_cubin(source, args.arch, cubin))
            sass = subprocess.run([nvdisasm, "-c", "-gi", cubin], capture_output=True, text=True, check=True).stdout
            functions = parse_sass(sass)
            names = demangle(list(functions))
            for name, fn in functions.items():
                loops = find_loops(fn)
                label_loops(fn, loops, markers)
                kernels.append((os.path.basename(source), names[name], stats.get(name, {}), loops, len(fn.instrs)))

    lines = [f"## {args.tag}", ""]
    lines.append(f"Arch {args.arch}; nvcc {nvcc_version()}; generated by `python scripts/sass_report.py --tag {args.tag}`.")
    lines.append("")
    lines.append("| file | kernel | regs | stack | spill st/ld | SASS | loops: shortest..longest instructions per iteration |")
    lines.append("|---|---|---|---|---|---|---|")
    for file, dem, st, loops, n in kernels:
        loop_txt = "; ".join(
            f"{'**' + l.label + '** ' if l.label else ''}{l.shortest}..{l.longest}" for l in loops) or "-"
        lines.append(f"| {file} | `{short_name(dem)}` | {st.get('registers', '?')} | {st.get('stack', '?')} | "
                     f"{st.get('spill_stores', '?')}/{st.get('spill_loads', '?')} | {n} | {loop_txt} |")
    lines.append("")
    lines.append("Hot loops of the fp32, 32-bit-index kernels (per thread and iteration):")
    lines.append("")
    lines.append("| loop | kernel | shortest | longest | elements/iter | instr/element (shortest..longest) |")
    lines.append("|---|---|---|---|---|---|")
    headline = []  # (label, kernel, shortest, longest, elements per iteration)
    for file, dem, st, loops, n in kernels:
        if not is_fp32_int32(dem):
            continue
        for l in loops:
            if l.label:
                per = max(l.per_iteration, 1)
                headline.append((l.label, short_name(dem), l.shortest, l.longest, per))
                lines.append(f"| {l.label} | `{short_name(dem)}` | {l.shortest} | {l.longest} | {per} | "
                             f"{l.shortest / per:.1f}..{l.longest / per:.1f} |")
    lines.append("")
    lines.extend(tsm_section(headline))
    write_report(args.out, args.tag, "\n".join(lines) + "\n", args.append)
    print("\n".join(lines))


def nvcc_version() -> str:
    res = subprocess.run([find_tool("nvcc"), "--version"], capture_output=True, text=True)
    m = re.search(r"release ([\d.]+)", res.stdout)
    return m.group(1) if m else "?"


def _loop(headline: list, label: str, kernel: str = ""):
    for lab, ker, shortest, longest, per in headline:
        if lab == label and kernel in ker:
            return shortest, longest, per
    return None


def tsm_section(headline: list) -> list:
    p = tsm_paths()
    issue = H200_SMS * H200_ISSUE_PER_SM * H200_CLOCK_HZ * 32  # thread-instructions per second
    out = [f"TSM workload: video {p['shape']} fp32, K={p['k']} cubes of {p['size']}: {p['outputs']:,} outputs, "
           f"{p['window']:,} window voxels; its cubes: {p['interior']:.0%} interior (every tap inside), "
           f"{p['aligned']:.0%} with a 16-byte-aligned x start.", ""]
    out.append(f"Assumed H200: {H200_SMS} SMs x {H200_ISSUE_PER_SM} warp instructions/clock x "
               f"{H200_CLOCK_HZ / 1e9:.2f} GHz = {issue / 1e12:.1f} T thread-instructions/s; "
               f"{H200_BYTES_PER_S / 1e12:.1f} TB/s.")
    out.append("")
    dw = p["size"][2]
    # Bytes the crop must move at least: forward reads the video once (cubes overlap little) and
    # writes the output; backward reads grad_out and the video and writes the video gradient.
    fwd_bytes = p["outputs"] * 4 + min(p["video_bytes"], p["window"] * 4)
    bwd_bytes = p["outputs"] * 4 + 2 * p["video_bytes"] + p["window"] * 4
    rows = []  # (pass, estimate, instructions per element, elements, how)
    legacy = _loop(headline, "forward")
    if legacy:  # the single grid-stride loop of the kernels before the rewrite
        rows.append(("forward", "grid-stride item loop (longest path: element loads)", legacy[1] / legacy[2],
                     p["outputs"], f"{legacy[1]} / {legacy[2]}"))
    packets, interior = _loop(headline, "forward-interior-packets"), _loop(headline, "forward-interior")
    if packets and interior:
        # Dw = 128 = 32 lanes x 4: one chunk per thread row, so the row loop's longest path is per row.
        share = p["interior_aligned"]
        per = share * packets[1] / packets[2] + (p["interior"] - share) * interior[1] / interior[2]
        rows.append(("forward", f"interior rows: {share:.0%} packets, {p['interior'] - share:.0%} element loads", per,
                     p["outputs"], f"{share:.2f} x {packets[1]}/4 + {p['interior'] - share:.2f} x {interior[1]}/4"))
    legacy = _loop(headline, "backward-window")
    if legacy:
        rows.append(("backward", "fused window kernel, per window voxel (longest)", legacy[1], p["window"],
                     f"{legacy[1]} / 1"))
    voxels_per_lane_row = (dw + 1) / 32
    for variant, what in (("true, true", "video (atomics) + centre"), ("false, true", "centre only"),
                          ("true, false", "video only (atomics)")):
        chunk = _loop(headline, "backward-window-chunk", variant)
        row = _loop(headline, "backward-window-interior", variant)
        if chunk and row:
            # The unmasked chunk loop per voxel, plus the row set-up (the row loop's shortest path:
            # no chunk) spread over the (Dw + 1) / 32 voxels a lane has per window row.
            per = chunk[1] / chunk[2] + row[0] / voxels_per_lane_row
            rows.append(("backward", f"window kernel, {what}, per window voxel", per, p["window"],
                         f"{chunk[1]}/{chunk[2]} + {row[0]} / {voxels_per_lane_row:.2f}"))
    gather = _loop(headline, "backward-gather-voxel")
    cube = _loop(headline, "backward-gather-interior")
    if gather and cube:
        per_voxel = gather[1] + (p["k"] - 1) * cube[1]  # the voxel loop holds one cube iteration
        video_voxels = p["video_bytes"] // 4
        rows.append(("backward", f"gather (video gradient, K = {p['k']}), per video voxel", per_voxel,
                     video_voxels, f"{gather[1]} + {p['k'] - 1} x {cube[1]}"))
    out.append("| pass | loop | instr/element | how | issue time | memory time (min bytes) |")
    out.append("|---|---|---|---|---|---|")
    for pass_name, what, per, elements, how in rows:
        nbytes = fwd_bytes if pass_name == "forward" else bwd_bytes
        t = per * elements / issue
        out.append(f"| {pass_name} | {what} | {per:.1f} | {how} | {t * 1e6:.1f} us | "
                   f"{nbytes / H200_BYTES_PER_S * 1e6:.1f} us ({nbytes / 1e6:.0f} MB) |")
    out.append("")
    return out


def write_report(path: str, tag: str, section: str, append: bool) -> None:
    header = ("# SASS instruction counts of the CUDA kernels (sm_90)\n\n" + METHOD + "\n")
    sections = collections.OrderedDict()
    if append and os.path.exists(path):
        with open(path) as f:
            text = f.read()
        for part in re.split(r"(?m)^(?=## )", text)[1:]:
            sections[part.split("\n", 1)[0][3:].strip()] = part.rstrip() + "\n"
    sections[tag] = section
    body = header + "\n".join(sections.values())
    with atomic_write(path, "w") as f:
        f.write(body)


# The report states its method: the docstring from "Method" on.
METHOD = __doc__[__doc__.index("Method"):].replace(" (also written into the report)", "")

if __name__ == "__main__":
    main()
