"""ONNX Runtime against PyTorch for paper-scale early-exit inference on CPU: what
`adafocus export` + `adafocus infer --runtime onnxruntime` are worth.

    .venv/bin/python -m benchmarks.bench_onnx --threads 2 --rounds 3

paper_tsm with random weights, batch 10 of random 24x224x224 clips (the preset's size), the
exit plan 0.3 / 0.7 / 0 of benchmarks.bench_inference, fp32. Variants, timed interleaved in
one process (median seconds per batch):
- pytorch: EarlyExitRunner after optimize_for_inference (what `adafocus infer` runs), freed
  memory retained (adafocus.inference.allocator);
- onnxruntime: OnnxEarlyExitRunner on the exported graphs (CPU provider), with ONNX Runtime's
  default busy-waiting threads and with spinning off (its glance and cube sessions have a
  thread pool each, which take turns);
each for the early exit and for the glance stage alone (every video stops at exit 0).
Writes benchmarks/results/bench_onnx_cpu.json.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmarks import repro_common as rc
from benchmarks.bench_inference import exit_mix_for


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--out", default="bench_onnx_cpu.json", help="file name under benchmarks/results/")
    args = parser.parse_args(argv)

    from adafocus.apps.bench import exit_plan_for, parse_exit_mix, time_interleaved
    from adafocus.apps.export import export_model
    from adafocus.inference import EarlyExitRunner
    from adafocus.inference.allocator import retain_freed_memory
    from adafocus.inference.onnx_runner import OnnxEarlyExitRunner
    from adafocus.inference.optimize import optimize_for_inference
    from adafocus.model import AdaFocusV3

    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()
    config = rc.run_config("configs/paper_tsm.yaml").model_config()
    torch.manual_seed(0)
    model = AdaFocusV3(config).eval()
    video_shape = (3, 24, 224, 224)
    folder = tempfile.TemporaryDirectory(prefix="bench_onnx_")
    start = time.perf_counter()
    export_model(model, folder.name, video_shape, "onnx")
    export_seconds = time.perf_counter() - start

    optimize_for_inference(model)  # after the export, which takes the model as trained
    runners = {
        "pytorch": EarlyExitRunner(model),
        "onnxruntime": OnnxEarlyExitRunner(folder.name, threads=args.threads),
        "onnxruntime_no_spinning": OnnxEarlyExitRunner(folder.name, threads=args.threads, allow_spinning=False),
    }
    video = torch.randn(args.batch_size, *video_shape, generator=torch.Generator().manual_seed(0))
    exit_mix = parse_exit_mix(exit_mix_for(config.num_exits), config.num_exits)
    plans = {"early_exit": exit_plan_for(exit_mix, args.batch_size),
             "glance_only": torch.zeros(args.batch_size, dtype=torch.long)}
    calls = {f"{name}/{stage}": (lambda r=runner, p=plan: r(video, exit_plan=p))
             for stage, plan in plans.items() for name, runner in runners.items()}
    with torch.inference_mode():
        outputs = {key: call() for key, call in calls.items()}  # warm-up, and the outputs to compare
        median = time_interleaved(calls, args.rounds, 1, torch.device("cpu"), warmup=0, pause_s=0.2)
    reference = outputs["pytorch/early_exit"]
    agreement = {key: {"same_exits": bool(torch.equal(out.exit_index, reference.exit_index)),
                       "max_abs_logit_difference": float((out.logits - reference.logits).abs().max())}
                 for key, out in outputs.items() if key.endswith("/early_exit")}
    result = {"machine": rc.machine(), "command": rc.command_line("benchmarks.bench_onnx", argv),
              "preset": "paper_tsm", "video_shape": list(video_shape), "batch_size": args.batch_size,
              "threads": args.threads, "rounds": args.rounds, "exit_mix": exit_mix, "retain_freed_memory": retained,
              "export_seconds": export_seconds, "seconds_per_batch": median,
              "videos_per_s": {key: args.batch_size / s for key, s in median.items()},
              "speedup_vs_pytorch": {key: median[f"pytorch/{key.split('/')[1]}"] / s for key, s in median.items()},
              "agreement_with_pytorch": agreement}
    print(f"paper_tsm, batch {args.batch_size}, {args.threads} threads, median of {args.rounds} rounds "
          f"(export {export_seconds:.0f} s)")
    for key, s in median.items():
        print(f"  {key:<36} {s:7.3f} s/batch  {args.batch_size / s:6.2f} videos/s  "
              f"{result['speedup_vs_pytorch'][key]:.2f}x pytorch")
    print(rc.write_json(args.out, result))
    folder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
