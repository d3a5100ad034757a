"""Run configuration: YAML file + command-line overrides.

One YAML file has four sections:

    model: {preset: tiny, <any adafocus.model.ModelConfig field>: value,
            glance: {<EncoderConfig field>: value}, local: {...}}
    data:  DataConfig fields (synthetic task or list files)
    train: TrainConfig fields
    eval:  EvalConfig fields

Every field can be overridden on the command line as `--section.field VALUE`
(`--train.lr 0.1`, `--model.cube_size 1,32,32` or `[1,32,32]`, `--data.flip false`,
`--model.local.backbone resnet50`), or as `--set section.field=VALUE`. Every value is
checked against its field's type when the config is built (config_checks), then its
range (RANGES) and the fields that must agree (RunConfig.validate): a wrong value is
one error naming the field, the value and what was expected. The merged
configuration is saved beside the checkpoints, so a run can always be reproduced.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml

from adafocus.data.decoding import DECODERS
from adafocus.training.config_checks import (ENCODER_FIELD_HELP, MODEL_FIELD_HELP, check_fields, did_you_mean,
                                             field_types, metavar, parse_text,
                                             unknown_field_error)
from adafocus.utils.files import atomic_write


def _help(text: str) -> Dict[str, str]:
    return {"help": text}


@dataclass
class DataConfig:
    kind: str = field(default="synthetic", metadata=_help("synthetic | frames (frame folders + list files) | videos (video files + list files)"))
    root: Optional[str] = field(default=None, metadata=_help("folder the list-file paths are relative to"))
    train_list: Optional[str] = field(default=None, metadata=_help("training list file (frames/videos)"))
    val_list: Optional[str] = field(default=None, metadata=_help("held-out list: with a test_list the early-exit thresholds are solved on it; without one the metrics are reported on it (thresholds: see calibration_fraction)"))
    test_list: Optional[str] = field(default=None, metadata=_help("list file the final metrics are reported on (default: val_list)"))
    calibration_fraction: float = field(default=0.05, metadata=_help("with no separate test_list: share of train_list held out from training (a fixed, path-hashed choice) to solve the early-exit thresholds on, so they are not solved on the report split; 0: solve them on the report split (optimistic)"))
    num_segments: int = field(default=16, metadata=_help("frames sampled per video (TSN segments: random offset in training, center at eval)"))
    image_size: int = field(default=224, metadata=_help("side of the square frames after cropping"))
    flip: bool = field(default=True, metadata=_help("random horizontal flip in training; false for direction-sensitive data (Something-Something)"))
    filename_tmpl: str = field(default="img_{:05d}.jpg", metadata=_help("frame file name template, formatted with the 1-based frame number"))
    has_num_frames: bool = field(default=False, metadata=_help("video lists carry num_frames after the path (frame lists always do)"))
    decoder: str = field(default="auto", metadata=_help("video-file decoder: auto (torchcodec if it and FFmpeg's shared libraries load, else PyAV) | pyav | torchcodec (optional, faster: decodes only the sampled frames)"))
    multi_label: bool = field(default=False, metadata=_help("targets are multi-hot (several labels per line); report mAP"))
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes"))
    cache_dir: Optional[str] = field(default="~/.cache/adafocus", metadata=_help("where generated synthetic videos are cached (null: regenerate in memory)"))
    synthetic: Dict[str, Any] = field(default_factory=dict, metadata=_help("adafocus.data.synthetic.SyntheticConfig fields (num_frames, height, width, train_size, ...)"))


@dataclass
class TrainConfig:
    output_dir: str = field(default="runs/adafocus", metadata=_help("checkpoints, TensorBoard logs, curves and plots go here"))
    epochs: int = field(default=10, metadata=_help("total training epochs (including the random-policy warm-up)"))
    random_policy_epochs: int = field(default=0, metadata=_help("first epochs train fL/fC on random cubes before the policy is used (feasibility-trial recipe)"))
    batch_size: int = field(default=32, metadata=_help("global batch size (split across DDP processes)"))
    accumulation_steps: int = field(default=1, metadata=_help("gradient-accumulation micro-batches per step (global batch = batch_size either way)"))
    optimizer: str = field(default="adamw", metadata=_help("optimizer: sgd (with momentum) | adamw"))
    lr: float = field(default=1e-3, metadata=_help("base learning rate (for the global batch)"))
    momentum: float = field(default=0.9, metadata=_help("momentum of the SGD optimizer, in [0, 1)"))
    weight_decay: float = field(default=1e-4, metadata=_help("weight decay (L2 penalty) of conv and linear weights; biases and norms get none"))
    warmup_epochs: float = field(default=0.5, metadata=_help("linear learning-rate warm-up, in epochs, before the cosine decay"))
    min_lr_ratio: float = field(default=0.01, metadata=_help("cosine schedule floor as a fraction of lr"))
    lr_multipliers: Dict[str, float] = field(default_factory=dict, metadata=_help("per-module LR factors by submodule name, e.g. {policy: 1.0, glance: 1.0, local: 1.0, classifier: 1.0}"))
    grad_clip: float = field(default=5.0, metadata=_help("max gradient L2 norm (0 disables clipping)"))
    amp: bool = field(default=False, metadata=_help("automatic mixed precision (fp16 on CUDA with a grad scaler, bf16 on CPU)"))
    seed: int = field(default=0, metadata=_help("seed of weights, sampling and augmentation"))
    device: str = field(default="auto", metadata=_help("auto | cpu | cuda | cuda:N"))
    threads: int = field(default=0, metadata=_help("torch CPU threads per process (0: leave torch's default)"))
    log_every: int = field(default=20, metadata=_help("steps between TensorBoard scalar writes"))
    tensorboard: bool = field(default=True, metadata=_help("write TensorBoard scalars under output_dir/tb"))
    progress: bool = field(default=True, metadata=_help("show tqdm progress bars while training and evaluating"))
    max_steps_per_epoch: int = field(default=0, metadata=_help("cut each epoch after this many steps (0: whole epoch); for smoke tests"))
    dist_timeout_s: float = field(default=300.0, metadata=_help("multi-process training: seconds a collective waits for the other processes before the run ends with an error (a stopped, dead or stuck process)"))


@dataclass
class EvalConfig:
    batch_size: int = field(default=64, metadata=_help("videos per batch when evaluating"))
    budgets: int = field(default=20, metadata=_help("number of GFLOPs budgets on the accuracy-vs-GFLOPs curve"))
    checkpoint: Optional[str] = field(default=None, metadata=_help("checkpoint to evaluate (default: output_dir/checkpoint.pt)"))
    summary_budget: float = field(default=0.6, metadata=_help("the reported early-exit point: thresholds solved on val for this fraction of the all-cubes GFLOPs (also what `infer` uses by default)"))


SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


@dataclass
class RunConfig:
    model: Dict[str, Any]
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig

    def to_dict(self) -> Dict[str, Any]:
        return {
            "model": copy.deepcopy(self.model),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
        }

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunConfig":
        """Every value checked against its field's type (config_checks.check_value), then validate()."""
        values = dict(values or {})
        unknown = set(values) - {"model", *SECTIONS}
        if unknown:
            name = sorted(unknown)[0]
            raise ValueError(f"unknown config section(s) {sorted(unknown)}{did_you_mean(name, ['model', *SECTIONS])}; "
                             f"known: model, {', '.join(SECTIONS)}")
        sections = {}
        for name, klass in SECTIONS.items():
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise ValueError(f"config section {name!r} must be a mapping of options, got {given!r}")
            given = check_fields(given, klass, name)
            if name == "data" and "synthetic" in given:
                from adafocus.data.synthetic import SyntheticConfig

                given["synthetic"] = check_fields(given["synthetic"], SyntheticConfig, "data.synthetic")
            sections[name] = klass(**given)
        model = values.get("model") or {"preset": "tiny"}
        if not isinstance(model, dict):
            raise ValueError(f"config section 'model' must be a mapping of options, got {model!r}")
        config = cls(model=check_model_values(model), **sections)
        config.validate()
        return config

    def validate(self) -> None:
        """Ranges and choices of every field, and the fields that must agree with each other."""
        for key, interval in RANGES.items():
            section, name = key.split(".")
            check_range(key, getattr(getattr(self, section), name), interval, field_types(SECTIONS[section])[name])
        for key, allowed in CHOICES.items():
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value not in allowed:
                raise ValueError(f"{key}={value!r}: expected one of {', '.join(allowed)}{did_you_mean(str(value), allowed)}")
        for key, ratio in self.train.lr_multipliers.items():
            if ratio < 0:
                raise ValueError(f"train.lr_multipliers.{key}={ratio!r}: expected a number >= 0")
        check_device(self.train.device, "train.device", need_available=False)
        if self.data.kind != "synthetic" and not self.data.train_list:
            raise ValueError(f"data.kind={self.data.kind!r} needs data.train_list")
        if self.train.random_policy_epochs > self.train.epochs:
            raise ValueError(f"train.random_policy_epochs={self.train.random_policy_epochs}: expected at most "
                             f"train.epochs={self.train.epochs}")
        try:
            model = self.model_config()
        except (ValueError, TypeError) as error:
            raise ValueError(f"model: {error}") from None
        frames, height, width = self.clip_shape()
        where = "data.synthetic.num_frames" if self.data.kind == "synthetic" else "data.num_segments"
        model.check_clip(frames, height, width, where)

    def clip_shape(self) -> tuple:
        """(frames, height, width) of the clips the model is fed."""
        if self.data.kind == "synthetic":
            from adafocus.data.synthetic import SyntheticConfig

            synthetic = SyntheticConfig.from_dict(self.data.synthetic)
            return synthetic.num_frames, synthetic.height, synthetic.width
        return self.data.num_segments, self.data.image_size, self.data.image_size

    def model_config(self):
        """The adafocus.model.ModelConfig this run builds."""
        from adafocus.model import ModelConfig

        values = dict(self.model)
        preset = values.pop("preset", None)
        if self.data.kind == "synthetic":
            values.setdefault("num_classes", 10)
        if preset:
            return ModelConfig.preset(preset, **values)
        return ModelConfig.from_dict(values)


# section.field: the interval its value must lie in ("[" and "]" include the bound, "(" and ")" do
# not). Types (int, finite float) are checked before; these are the values that type-check but
# mean nothing (0 epochs, a negative warm-up, ...).
RANGES = {
    "data.num_segments": "[1, inf)",
    "data.image_size": "[1, inf)",
    "data.num_workers": "[0, inf)",
    "data.calibration_fraction": "[0, 1)",
    "train.epochs": "[1, inf)",
    "train.random_policy_epochs": "[0, inf)",
    "train.batch_size": "[1, inf)",
    "train.accumulation_steps": "[1, inf)",
    "train.lr": "(0, inf)",
    "train.momentum": "[0, 1)",
    "train.weight_decay": "[0, inf)",
    "train.warmup_epochs": "[0, inf)",
    "train.min_lr_ratio": "[0, 1]",
    "train.grad_clip": "[0, inf)",
    "train.seed": "[0, inf)",
    "train.threads": "[0, inf)",
    "train.log_every": "[1, inf)",
    "train.max_steps_per_epoch": "[0, inf)",
    "train.dist_timeout_s": "(0, inf)",
    "eval.batch_size": "[1, inf)",
    "eval.budgets": "[1, inf)",
    "eval.summary_budget": "(0, 1]",
}


def check_range(key: str, value, interval: str, annotation) -> None:
    """ValueError naming `key` unless `value` lies in `interval` (RANGES' notation)."""
    low_text, high_text = (part.strip() for part in interval[1:-1].split(","))
    low, high = float(low_text), float(high_text)
    inside = (value >= low if interval[0] == "[" else value > low) and (value <= high if interval[-1] == "]" else value < high)
    if inside:
        return
    kind = "an integer" if annotation is int else "a number"
    if math.isinf(high):
        expected = f"{kind} {'>=' if interval[0] == '[' else '>'} {low_text}"
    else:
        expected = f"{kind} in {interval}"
    raise ValueError(f"{key}={value!r}: expected {expected}")


CHOICES = {
    "data.kind": ("synthetic", "frames", "videos"),
    "data.decoder": DECODERS,
    "train.optimizer": ("sgd", "adamw"),
}


def check_device(name: str, option: str, need_available: bool = True) -> None:
    """`name` is auto, cpu, cuda or cuda:N, and (need_available) that device exists here."""
    import torch

    parts = name.split(":")
    if not (name in ("auto", "cpu", "cuda") or (len(parts) == 2 and parts[0] == "cuda" and parts[1].isdigit())):
        raise ValueError(f"{option}={name!r}: expected auto, cpu, cuda or cuda:N")
    if not need_available or not name.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ValueError(f"{option}={name!r} but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                         f"use {option} cpu or auto")
    if len(parts) == 2 and int(parts[1]) >= torch.cuda.device_count():
        raise ValueError(f"{option}={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")


def load_yaml(path: Optional[str]) -> Dict[str, Any]:
    """The mapping in a YAML config file ({} for no file); errors name the file (and line)."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist" if not os.path.exists(path)
                                else f"config file {path} is not a file")
    with open(path) as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" line {where.line + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"{path}{line}: not valid YAML ({problem})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must be a mapping of sections, got {type(values).__name__}")
    return values


def merge_dicts(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    """A deep copy of `base` with `extra` merged in, section by section."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(values: Dict[str, Any], key: str, value: Any) -> None:
    """values['train']['lr'] = value for key 'train.lr' (and deeper: 'model.local.backbone')."""
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override {key!r} must be section.field, e.g. train.lr")
    node = values
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (for keys with no known type)."""
    return yaml.safe_load(text) if isinstance(text, str) else text


# Spellings older config files and command lines use; read with a deprecation warning.
LEGACY_ENCODER_OPTIONS = tuple(f"{encoder}_{name}" for encoder in ("glance", "local")
                               for name in ("backbone", "weights", "tsm", "tiny_channels", "tiny_stride"))
LEGACY_MODEL_OPTIONS = ("mode", "multi_label") + LEGACY_ENCODER_OPTIONS


def _model_types() -> Dict[str, Any]:
    """{model option: annotation}: ModelConfig's fields, `preset` and the legacy spellings."""
    from adafocus.model import EncoderConfig, ModelConfig

    types = {"preset": str, **field_types(ModelConfig), "mode": str, "multi_label": bool}
    encoder = field_types(EncoderConfig)
    for name in LEGACY_ENCODER_OPTIONS:
        types[name] = encoder[name.split("_", 1)[1]]
    return types


def check_model_values(values: Dict[str, Any]) -> Dict[str, Any]:
    """The model section with every value checked against its ModelConfig/EncoderConfig field."""
    from adafocus.model import PRESETS

    checked = check_fields(values, _model_types(), "model")
    if "preset" in checked and checked["preset"] not in PRESETS:
        raise ValueError(f"model.preset={checked['preset']!r}: expected one of {', '.join(sorted(PRESETS))}"
                         f"{did_you_mean(checked['preset'], PRESETS)}")
    return checked


def annotation_of(key: str):
    """The type of the config value at dotted `key` (train.lr, model.local.backbone, data.synthetic.height);
    an unknown key is an error with the closest known one."""
    from adafocus.data.synthetic import SyntheticConfig
    from adafocus.model import EncoderConfig

    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override {key!r} must be section.field, e.g. train.lr")
    section = parts[0]
    if section == "model":
        types = _model_types()
        if len(parts) == 3 and parts[1] in ("glance", "local"):
            types, section, parts = field_types(EncoderConfig), f"model.{parts[1]}", parts[1:]
    elif section in SECTIONS:
        types = field_types(SECTIONS[section])
        if section == "data" and len(parts) == 3 and parts[1] == "synthetic":
            types, section, parts = field_types(SyntheticConfig), "data.synthetic", parts[1:]
    else:
        raise ValueError(f"unknown config section {section!r} in {key!r}{did_you_mean(section, ['model', *SECTIONS])}; "
                         f"known: model, {', '.join(SECTIONS)}")
    if len(parts) != 2 or parts[1] not in types:
        raise unknown_field_error(section, ".".join(parts[1:]), types)
    return types[parts[1]]


def model_field_help() -> List[tuple]:
    """(option name under --model., help, annotation) for every ModelConfig field, encoder sub-fields included."""
    from adafocus.model import EncoderConfig, ModelConfig

    defaults = ModelConfig()
    out = [("preset", "named model settings to start from: tiny | paper_tsm | paper_long (options below override them)", str)]
    types, encoder_types = field_types(ModelConfig), field_types(EncoderConfig)
    for f in dataclasses.fields(ModelConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, EncoderConfig):
            for sub in dataclasses.fields(EncoderConfig):
                text = f"{f.name} encoder: {ENCODER_FIELD_HELP.get(sub.name, '')}"
                out.append((f"{f.name}.{sub.name}", f"{text} (default: {_shown(getattr(value, sub.name))})",
                            encoder_types[sub.name]))
        else:
            out.append((f.name, f"{MODEL_FIELD_HELP.get(f.name, '')} (default: {_shown(value)})", types[f.name]))
    return out


def _shown(value) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, dict) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE, plus one --section.field option per config field (with its help)."""
    parser.add_argument("--config", metavar="YAML", help="YAML config file (sections model/data/train/eval); options below override it")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="generic override, e.g. --set train.lr=0.1 or --set data.synthetic.num_frames=8 (repeatable)")
    group = parser.add_argument_group(
        "model options (adafocus.model.ModelConfig; lists are written 1,24,24 or [1,24,24]; booleans true/false)")
    for name, text, annotation in model_field_help():
        group.add_argument(f"--model.{name}", dest=f"model.{name}", metavar=metavar(annotation), default=None, help=text)
    for name in LEGACY_MODEL_OPTIONS:
        group.add_argument(f"--model.{name}", dest=f"model.{name}", metavar="V", default=None, help=argparse.SUPPRESS)
    for section, klass in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        types = field_types(klass)
        for f in dataclasses.fields(klass):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", metavar=metavar(types[f.name]),
                               default=None, help=f"{f.metadata.get('help', '')} (default: {_shown(default)})")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Merge: defaults < YAML file < --set < --section.field options; values parsed for their field's type."""
    values = load_yaml(getattr(args, "config", None))
    for item in getattr(args, "set", []) or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key = key.strip()
        set_dotted(values, key, parse_text(text, annotation_of(key)))
    for key, text in vars(args).items():
        if "." in key and text is not None:
            set_dotted(values, key, parse_text(text, annotation_of(key)))
    return RunConfig.from_dict(values)


def save_yaml(config: RunConfig, path: str) -> None:
    with atomic_write(path) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
