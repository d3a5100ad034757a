"""The `adafocus` command (also `python -m adafocus`).

    adafocus train --config configs/demo.yaml [--train.epochs 5 ...] [--resume]
    adafocus eval  --config configs/demo.yaml [--eval.checkpoint PATH]
    adafocus infer VIDEO_OR_FOLDER --checkpoint PATH [--budget GFLOPS] [--save-cubes cubes.png]
    adafocus bench --config configs/demo.yaml [--batch-size 32]
    adafocus flops --config configs/paper_tsm.yaml [--json]
    adafocus demo  [--output-dir outputs/demo]
    adafocus export --checkpoint PATH --out DIR
    adafocus make-lists --format sthv2 --annotations FILE --labels FILE --root DIR --out LIST

Multi-process training: `torchrun --nproc-per-node N -m adafocus train ...`
(the process group is read from torchrun's environment).

A user error (a bad option or value, a missing or unreadable file, no GPU for a
cuda device, ...) ends in one line `adafocus COMMAND: error: ...` and exit status 2;
`-v` also prints the traceback. `infer` exits 1 when some input could not be classified.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from typing import List, Optional

try:
    from adafocus.training.config import add_config_arguments, check_device, config_from_args
    from adafocus.training.config_checks import did_you_mean
except ModuleNotFoundError as missing:  # installed without the [train] extra: say so instead of a traceback
    MISSING_EXTRA: Optional[ModuleNotFoundError] = missing
else:
    MISSING_EXTRA = None

DESCRIPTION = __doc__


def _config(args):
    """The run config of a train/eval/bench command line, with the machine checked for what it names."""
    config = config_from_args(args)
    check_device(config.train.device, "train.device")
    if config.data.kind == "videos":
        from adafocus.data.decoding import resolve_decoder

        resolve_decoder(config.data.decoder)
    return config


def _train(args) -> int:
    from adafocus.training import distributed
    from adafocus.training.trainer import train

    config = _config(args)
    path = train(config, resume=args.resume)
    if args.evaluate:
        if distributed.init(config.train.device).is_main:
            from adafocus.apps.evaluate import evaluate_checkpoint
            from adafocus.evaluation import format_report

            config.eval.checkpoint = path
            print(format_report(evaluate_checkpoint(config)))
    distributed.cleanup()
    return 0


def _eval(args) -> int:
    from adafocus.apps.evaluate import evaluate_checkpoint
    from adafocus.evaluation import format_report

    config = _config(args)
    report = evaluate_checkpoint(config, write_thresholds=not args.no_write_thresholds)
    print(format_report(report))
    return 0


def _infer(args) -> int:
    from adafocus.apps.infer import run_inference

    check_device(args.device, "--device")
    results = run_inference(args.inputs, args.checkpoint, budget=args.budget, top_k=args.top_k,
                            save_cubes=args.save_cubes, device=args.device, num_frames=args.num_frames,
                            image_size=args.image_size, all_cubes=args.all_cubes, decoder=args.decoder,
                            allow_truncated=args.allow_truncated, runtime=args.runtime, model_dir=args.model_dir,
                            retain_memory=not args.system_malloc)
    if args.json:
        print(json.dumps(results, indent=1))
    return 1 if any("error" in r for r in results) else 0


def _gflops(text: str) -> float:
    """--budget: a positive number of GFLOPs, or inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GFLOPs per video or inf, got {text!r}") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of GFLOPs per video or inf, got {text!r}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _bench(args) -> int:
    from adafocus.apps.bench import format_bench, run_bench

    config = _config(args)
    result = run_bench(config, batch_size=args.batch_size, iterations=args.iterations, rounds=args.rounds,
                       checkpoint=args.checkpoint, exit_mix=args.exit_mix, dtype=args.dtype,
                       compile_encoders=args.compile, glance_memory_format=args.glance_memory_format,
                       local_memory_format=args.local_memory_format, video_size=args.video_size,
                       retain_memory=not args.system_malloc)
    print(json.dumps(result, indent=1) if args.json else format_bench(result))
    return 0


def _flops(args) -> int:
    from adafocus.apps.flops import flops_report, format_flops

    report = flops_report(config_from_args(args))  # no device, data or weights needed
    print(json.dumps(report, indent=1) if args.json else format_flops(report))
    return 0


def add_flops_command(sub) -> None:
    p = sub.add_parser("flops", help="GMACs per exit of AdaFocusV3 and of the full-video baseline (no data, no weights)",
                       description="Count the multiply-adds (the paper's GFLOPs) of a config's AdaFocusV3 per exit and "
                                   "per component, and of the full-video baseline (TSM+), on the config's clip shape. "
                                   "Both networks are built on the meta device: nothing is read or computed.")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    add_config_arguments(p)
    p.set_defaults(func=_flops)


def _demo(args) -> int:
    from adafocus.apps.demo import run_demo

    return run_demo(output_dir=args.output_dir, quick=args.quick, config_path=args.config,
                    parallel=False if args.sequential else None)


def add_train_command(sub) -> None:
    p = sub.add_parser("train", help="train AdaFocusV3 (YAML config + overrides; torchrun for several processes)",
                       description="Train AdaFocusV3. Checkpoints go to train.output_dir/checkpoint.pt after every epoch.")
    p.add_argument("--resume", action="store_true", help="continue from train.output_dir/checkpoint.pt (bit-for-bit)")
    p.add_argument("--evaluate", action="store_true", help="run `eval` on the finished checkpoint")
    add_config_arguments(p)
    p.set_defaults(func=_train)


def add_eval_command(sub) -> None:
    p = sub.add_parser("eval", help="per-exit top-1/mAP, early-exit thresholds on val, accuracy-vs-GFLOPs curve on test",
                       description="Evaluate a checkpoint: top-1 and mAP per exit, thresholds solved on the val split "
                                   "for a range of GFLOPs budgets and applied to the test split; writes "
                                   "curve.json and curve.png next to the checkpoint and stores the thresholds in it.")
    p.add_argument("--no-write-thresholds", action="store_true", help="do not store the solved thresholds in the checkpoint")
    add_config_arguments(p)
    p.set_defaults(func=_eval)


def add_infer_command(sub) -> None:
    p = sub.add_parser("infer", help="classify videos (files or frame folders) with early exit",
                       description="Classify each video: prints the top-k classes, the exit taken and the GFLOPs "
                                   "spent. Every input is tried; one that cannot be classified (missing, empty, not "
                                   "a video, truncated) gets one error line, and the exit status is then 1.")
    p.add_argument("inputs", nargs="+", help="video files, frame folders, or folders of them")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint written by `adafocus train` (thresholds by `adafocus eval`); required with the torch runtime")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"),
                   help="torch: the checkpoint in PyTorch; onnxruntime: the graphs `adafocus export` wrote to --model-dir "
                        "(needs the onnxruntime package)")
    p.add_argument("--model-dir", default=None, help="folder written by `adafocus export` (with --runtime onnxruntime)")
    exits = p.add_mutually_exclusive_group()
    exits.add_argument("--budget", type=_gflops, default=None, metavar="GFLOPS",
                       help="average GFLOPs per video: use the thresholds `adafocus eval` solved on val for the "
                            "largest budget whose val cost fits (inf: every cube, no early exit). Default: the "
                            "thresholds stored in the checkpoint, i.e. eval's reported early-exit point "
                            "(eval.summary_budget of the all-cubes cost), or every cube if eval never ran")
    exits.add_argument("--all-cubes", action="store_true", help="no early exit: every video runs every cube (= --budget inf)")
    p.add_argument("--top-k", type=_at_least_one, default=5, help="classes to print per video")
    p.add_argument("--save-cubes", metavar="PNG", default=None,
                   help="save a contact sheet: per video, the frame of each cube it used with the cube drawn, or "
                        "the glance frames for a video that stopped at the glance; captions give source-video "
                        "frame numbers")
    p.add_argument("--num-frames", type=_at_least_one, default=None, help="frames sampled per video (default: the training config's)")
    p.add_argument("--image-size", type=_at_least_one, default=None, help="frame side after resize+center crop (default: the training config's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--decoder", default="auto", choices=("auto", "pyav", "torchcodec"),
                   help="video decoder (auto: torchcodec when usable, else PyAV)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="classify a video that ends early (fewer decodable frames than its container lists) from "
                        "the frames that decode, with a warning (default: report it as failed)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    add_system_malloc_argument(p)
    p.set_defaults(func=_infer)


def add_system_malloc_argument(p) -> None:
    p.add_argument("--system-malloc", action="store_true",
                   help="on CPU, leave glibc's malloc as it is (default: keep freed memory in the process, which "
                        "about halved paper-scale CPU inference time; adafocus.inference.allocator)")


def add_bench_command(sub) -> None:
    p = sub.add_parser("bench", help="videos/s: AdaFocusV3 early exit and all cubes vs the full-video baseline, in one run",
                       description="Throughput on the current device of AdaFocusV3 (batched early exit, all cubes, "
                                   "glance only) and of the full-video baseline with the same backbones, input videos "
                                   "and batch size, timed in interleaved rounds. Works from a config or preset alone "
                                   "(random weights; give --exit-mix) or from a checkpoint (its thresholds).")
    p.add_argument("--checkpoint", default=None, help="checkpoint whose weights and thresholds to use (default: random "
                                                      "weights from the config)")
    p.add_argument("--exit-mix", default=None, metavar="P0,P1,...",
                   help="force these shares of the videos to stop at exits 0..M (e.g. 0.3,0.7,0 for two cubes): "
                        "thresholds are placed on the batch's own entropies (default: the model's stored thresholds)")
    p.add_argument("--video-size", default=None, metavar="T,H,W",
                   help="time random videos of this many frames and pixels (default: the config's data shape)")
    p.add_argument("--batch-size", type=int, default=32, help="videos per batch")
    p.add_argument("--iterations", type=int, default=3, help="batches per variant per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each variant reports its median round")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="autocast dtype (fp16/bf16 for GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders' backbones first (one graph per batch "
                   "shape; on CPU it did not pay, REPRODUCTION.md 3d)")
    p.add_argument("--glance-memory-format", default=None, choices=("contiguous", "channels_last"),
                   help="memory format of the glance encoder (default: per backbone and device, see adafocus.inference.optimize)")
    p.add_argument("--local-memory-format", default=None, choices=("contiguous", "channels_last"),
                   help="memory format of the local encoder (default: per backbone and device)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    add_system_malloc_argument(p)
    add_config_arguments(p)
    p.set_defaults(func=_bench)


def add_demo_command(sub) -> None:
    p = sub.add_parser("demo", help="the embedded demo: synthetic data, learned vs random policy, early exit (< 15 min on 2 cores)",
                       description="Generate the synthetic task, train a tiny AdaFocusV3 (deep-feature crop gradient) "
                                   "and a random-policy control, evaluate both and print the comparison table.")
    p.add_argument("--output-dir", default="outputs/demo", help="where checkpoints, curves and plots go")
    p.add_argument("--config", default=None, help="demo config (default: configs/demo.yaml, or the built-in copy)")
    p.add_argument("--quick", action="store_true", help="a much smaller run (smoke test; numbers are not meaningful)")
    p.add_argument("--sequential", action="store_true",
                   help="train the two branches one after the other (default: in parallel, one process and thread each)")
    p.set_defaults(func=_demo)


def _export(args) -> int:
    from adafocus.apps.export import export_checkpoint

    manifest = export_checkpoint(args.checkpoint, args.out, args.format, args.num_frames, args.image_size)
    print(f"exported {', '.join(manifest['files'].values())} and manifest.json to {args.out} "
          f"({manifest['format']}, input (B, {', '.join(map(str, manifest['video_shape']))}), {manifest['num_exits']} exits)")
    return 0


def add_export_command(sub) -> None:
    p = sub.add_parser("export", help="write the early-exit model as ONNX or torch.export graphs plus a manifest",
                       description="Export a checkpoint's inference: a glance stage (exit 0 and every cube's centre) "
                                   "and a cube stage (integer crop, fL, the exit head on the accumulated features), "
                                   "with a manifest.json of the input shape, preprocessing, thresholds per budget and "
                                   "GMACs per exit. Batch sizes are dynamic. Run the ONNX graphs with "
                                   "`adafocus infer --runtime onnxruntime --model-dir DIR`.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `adafocus train` (thresholds by `adafocus eval`)")
    p.add_argument("--out", required=True, help="folder to write the graphs and manifest.json into")
    p.add_argument("--format", default="onnx", choices=("onnx", "torch-export"),
                   help="onnx (opset 18, for ONNX Runtime / TensorRT / OpenVINO) or torch-export (.pt2 ExportedPrograms)")
    p.add_argument("--num-frames", type=int, default=None, help="frames per video the graphs take (default: the training config's)")
    p.add_argument("--image-size", type=int, default=None, help="frame side the graphs take (default: the training config's)")
    p.set_defaults(func=_export)


def _make_lists(args) -> int:
    from adafocus.apps.make_lists import run_make_lists

    run_make_lists(args.format, args.annotations, args.root, args.out, labels=args.labels, split=args.split)
    return 0


def add_make_lists_command(sub) -> None:
    from adafocus.data.annotations import FORMATS

    p = sub.add_parser("make-lists", help="write list files (and classes.txt) from a dataset's own annotation files",
                       description="Convert the annotation files Something-Something V1/V2, Kinetics, ActivityNet "
                                   "v1.3 and Diving48 ship with into the list files `adafocus train` reads "
                                   "(0-based labels) plus a classes.txt beside the list. Videos missing under "
                                   "--root are counted, reported and left out.")
    p.add_argument("--format", required=True, choices=FORMATS, help="the dataset's annotation format")
    p.add_argument("--annotations", required=True, metavar="FILE",
                   help="the split's annotation file (sthv2: something-something-v2-train.json; sthv1: "
                        "something-something-v1-train.csv; kinetics: train.csv; activitynet: activity_net.v1-3.min.json; "
                        "diving48: Diving48_V2_train.json)")
    p.add_argument("--labels", metavar="FILE", default=None,
                   help="the class list (sthv2: something-something-v2-labels.json, sthv1: something-something-v1-labels.csv, "
                        "required for both; kinetics/activitynet: a classes.txt, default: the labels sorted by name; "
                        "diving48: Diving48_vocab.json, default: the class numbers)")
    p.add_argument("--root", required=True, metavar="DIR", help="folder holding the videos (or sthv1 frame folders); list paths are relative to it")
    p.add_argument("--out", required=True, metavar="LIST", help="list file to write (classes.txt goes beside it)")
    p.add_argument("--split", default=None,
                   help="keep only this split (kinetics: the CSV's split column, e.g. train or val; activitynet: "
                        "training or validation, required)")
    p.set_defaults(func=_make_lists)


# One entry per subcommand, in the order `adafocus --help` lists them. Each adds its parser and
# handler; handlers import their app module only when they run, so `--help` stays fast.
COMMANDS = (
    add_train_command,
    add_eval_command,
    add_infer_command,
    add_bench_command,
    add_flops_command,
    add_demo_command,
    add_export_command,
    add_make_lists_command,
)

# Errors that come from what the user gave (options, files, the machine): one line and exit 2.
USER_ERRORS = (ValueError, OSError, RuntimeError, EOFError, ImportError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse without prefix matching, whose errors are one line with a "did you mean" where one fits."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unrecognized(self, extras: List[str]):
        hints = [did_you_mean(x.split("=")[0], self._option_string_actions) for x in extras if x.startswith("-")]
        self.error(f"unrecognized arguments: {' '.join(extras)}{''.join(h for h in hints if h)}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="adafocus", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks with errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
    for command in sub.choices.values():  # `adafocus train -v ...` works as well as `adafocus -v train ...`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="debug logging, and tracebacks with errors")
    return parser


def one_line(error: BaseException) -> str:
    """An exception as one line of text (its message, with the type where the message needs it)."""
    text = " ".join(str(error).split())
    if isinstance(error, (ValueError, OSError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def main(argv: Optional[List[str]] = None) -> int:
    if MISSING_EXTRA is not None:
        print(f"adafocus: error: the adafocus command needs the packages of the [train] extra ({MISSING_EXTRA}): "
              "pip install --no-build-isolation '.[train]' in a checkout, or pip install 'cubecrop[train]'",
              file=sys.stderr)
        return 2
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser._subparsers._group_actions[0].choices[args.command].unrecognized(extras)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"adafocus {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every error ends in one line (the traceback with -v)
        import pickle

        import yaml

        if args.verbose:
            logging.getLogger("adafocus").exception("adafocus %s failed", args.command)
        if isinstance(error, USER_ERRORS + (pickle.UnpicklingError, yaml.YAMLError)):
            print(f"adafocus {args.command}: error: {one_line(error)}", file=sys.stderr)
            return 2
        print(f"adafocus {args.command}: error: unexpected {one_line(error)} (a bug: rerun with -v for the "
              "traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
