"""Decoding speed and memory: clips/s and peak RSS per decoder, on a short and a long video.

    python -m benchmarks.bench_decode                       # 10 s and 90 s of 1280x720 at 30 fps
    python -m benchmarks.bench_decode --quick               # 2 s and 12 s of 320x240 (a smoke run)

The videos are generated with PyAV (libx264) into --video-dir (kept there, so a rerun
reuses them; never in the repository). Each measurement runs in a fresh process that
reads `--clips` TSN clips of `--segments` frames (evaluation sampling, then training
sampling with random offsets) through adafocus.data.decoding.read_video_clip and
reports the median seconds per clip and its peak RSS (ru_maxrss), next to the RSS it
had before decoding anything. The variants run interleaved (A B C A B C ...) for
`--rounds` rounds; each reports its median round. Variants: pyav (the default reader:
demux index + keyframe seeks), pyav_forward (the same reader without seeking, to
show what the seeks buy), torchcodec (when it is usable here).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = ("pyav", "pyav_forward", "torchcodec")


def write_video(path: str, seconds: float, width: int, height: int, fps: int) -> None:
    """A moving square over a gradient with a little texture, H.264 (x264 ultrafast)."""
    import av
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx ^ yy) & 63], -1).astype(np.uint8)
    side = max(8, height // 7)
    tmp = path + ".part.mp4"
    with av.open(tmp, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for t in range(int(seconds * fps)):
            frame = base.copy()
            x, y = (t * 7) % (width - side), (t * 3) % (height - side)
            frame[y : y + side, x : x + side] = (255, (t * 5) % 256, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def worker(variant: str, path: str, segments: int, clips: int) -> dict:
    """Runs in its own process: decode `clips` clips, report seconds per clip and peak RSS."""
    import resource

    import numpy as np

    from adafocus.data import decoding

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if variant == "pyav_forward":
        decoding.SEEK_MIN_SKIP = 1 << 60
    decoder = "torchcodec" if variant == "torchcodec" else "pyav"
    rng = np.random.default_rng(0)
    seconds = []
    for i in range(clips):
        start = time.perf_counter()
        clip = decoding.read_video_clip(path, segments, train=i > 0, rng=rng, decoder=decoder)
        seconds.append(time.perf_counter() - start)
    return {"seconds_per_clip": statistics.median(seconds), "first_clip_s": seconds[0],
            "num_frames": clip.num_frames, "rss_before_mb": before / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure(variant: str, path: str, segments: int, clips: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_decode", "--worker", variant, path,
                           "--segments", str(segments), "--clips", str(clips)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{variant} on {path} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "VIDEO"), help=argparse.SUPPRESS)
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=90.0)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the generated videos")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--segments", type=int, default=16, help="frames per clip (TSN segments)")
    parser.add_argument("--clips", type=int, default=5, help="clips read per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each variant reports its median")
    parser.add_argument("--video-dir", default=os.path.join(tempfile.gettempdir(), "adafocus_bench_decode"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="2 s and 12 s of 320x240, 1 round (smoke run)")
    parser.add_argument("--out", default=None, help="JSON results file (default: print only)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.segments, args.clips)))
        return 0
    if args.quick:
        args.short_seconds, args.long_seconds, args.size, args.rounds, args.clips = 2.0, 12.0, "320x240", 1, 3

    from adafocus.data.decoding import torchcodec_error
    from adafocus.utils.files import atomic_write

    width, height = (int(v) for v in args.size.lower().split("x"))
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    skipped = {}
    if "torchcodec" in variants and torchcodec_error() is not None:
        skipped["torchcodec"] = torchcodec_error()
        variants.remove("torchcodec")
    os.makedirs(args.video_dir, exist_ok=True)
    videos = {}
    for name, seconds in (("short", args.short_seconds), ("long", args.long_seconds)):
        path = os.path.join(args.video_dir, f"{name}_{seconds:g}s_{width}x{height}_{args.fps}fps.mp4")
        if not os.path.exists(path):
            print(f"writing {path}", flush=True)
            write_video(path, seconds, width, height, args.fps)
        videos[name] = path

    runs = {(v, n): [] for v in variants for n in videos}
    for round_index in range(args.rounds):
        for name, path in videos.items():
            for variant in variants:  # interleaved: every variant once per round
                runs[variant, name].append(_measure(variant, path, args.segments, args.clips))
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)

    rows = []
    for (variant, name), results in runs.items():
        seconds = statistics.median(r["seconds_per_clip"] for r in results)
        rows.append({"decoder": variant, "video": name, "seconds": args.short_seconds if name == "short" else args.long_seconds,
                     "frames": results[0]["num_frames"], "clips_per_s": 1.0 / seconds,
                     "seconds_per_clip": seconds,
                     "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
                     "rss_before_decoding_mb": statistics.median(r["rss_before_mb"] for r in results)})
    from benchmarks import repro_common as rc  # here, not at the top: the decoding workers import this module

    result = {"size": [width, height], "fps": args.fps, "segments": args.segments, "clips": args.clips,
              "rounds": args.rounds, "cpu_count": os.cpu_count(), "skipped": skipped, "rows": rows,
              "command": rc.command_line("benchmarks.bench_decode", argv)}
    print(f"{'decoder':<13} {'video':<14} {'clips/s':>8} {'s/clip':>7} {'peak RSS':>9} {'RSS before':>10}")
    for r in rows:
        print(f"{r['decoder']:<13} {r['video'] + ' (' + format(r['seconds'], 'g') + ' s)':<14} {r['clips_per_s']:8.2f} "
              f"{r['seconds_per_clip']:7.2f} {r['peak_rss_mb']:7.0f} MB {r['rss_before_decoding_mb']:7.0f} MB")
    for variant, why in skipped.items():
        print(f"{variant}: skipped ({why})")
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(result, f, indent=1)
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
