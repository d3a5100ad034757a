"""Run configuration: YAML file + command-line overrides.

One YAML file has four sections:

    model: {preset: tiny, <any adafocus.model.ModelConfig field>: value,
            glance: {<EncoderConfig field>: value}, local: {...}}
    data:  DataConfig fields (synthetic task or list files)
    train: TrainConfig fields
    eval:  EvalConfig fields

Every field can be overridden on the command line as `--section.field VALUE`
(VALUE parsed as YAML, so `--train.lr 0.1`, `--model.cube_size [1,32,32]`,
`--data.flip false`, `--model.local.backbone resnet50`). The merged configuration is saved beside the
checkpoints, so a run can always be reproduced.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml


def _help(text: str) -> Dict[str, str]:
    return {"help": text}


@dataclass
class DataConfig:
    kind: str = field(default="synthetic", metadata=_help("synthetic | frames (frame folders + list files) | videos (video files + list files)"))
    root: Optional[str] = field(default=None, metadata=_help("folder the list-file paths are relative to"))
    train_list: Optional[str] = field(default=None, metadata=_help("training list file (frames/videos)"))
    val_list: Optional[str] = field(default=None, metadata=_help("held-out list the early-exit thresholds are solved on"))
    test_list: Optional[str] = field(default=None, metadata=_help("list file the final metrics are reported on (default: val_list)"))
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
    optimizer: str = field(default="adamw", metadata=_help("sgd | adamw"))
    lr: float = field(default=1e-3, metadata=_help("base learning rate (for the global batch)"))
    momentum: float = field(default=0.9, metadata=_help("SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=_help("weight decay"))
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
    progress: bool = field(default=True, metadata=_help("show tqdm progress bars"))
    max_steps_per_epoch: int = field(default=0, metadata=_help("cut each epoch after this many steps (0: whole epoch); for smoke tests"))


@dataclass
class EvalConfig:
    batch_size: int = field(default=64, metadata=_help("evaluation batch size"))
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
        values = dict(values or {})
        unknown = set(values) - {"model", *SECTIONS}
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: model, {', '.join(SECTIONS)}")
        sections = {}
        for name, klass in SECTIONS.items():
            given = dict(values.get(name) or {})
            known = {f.name for f in dataclasses.fields(klass)}
            bad = set(given) - known
            if bad:
                raise ValueError(f"unknown {name} option(s) {sorted(bad)}; known: {sorted(known)}")
            sections[name] = klass(**given)
        config = cls(model=dict(values.get("model") or {"preset": "tiny"}), **sections)
        config.validate()
        return config

    def validate(self) -> None:
        if self.data.kind not in ("synthetic", "frames", "videos"):
            raise ValueError(f"data.kind must be synthetic, frames or videos, got {self.data.kind!r}")
        if self.data.kind != "synthetic" and not self.data.train_list:
            raise ValueError(f"data.kind={self.data.kind!r} needs data.train_list")
        if self.train.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"train.optimizer must be sgd or adamw, got {self.train.optimizer!r}")
        if self.train.epochs < 1 or self.train.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")
        if not 0 <= self.train.random_policy_epochs <= self.train.epochs:
            raise ValueError("train.random_policy_epochs must lie in [0, train.epochs]")
        self.model_config()  # raises on bad model fields

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


def load_yaml(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        return {}
    with open(path) as f:
        values = yaml.safe_load(f) or {}
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
    return yaml.safe_load(text) if isinstance(text, str) else text


# Spellings older config files and command lines use; read with a deprecation warning.
LEGACY_MODEL_OPTIONS = ("mode", "multi_label") + tuple(
    f"{encoder}_{name}" for encoder in ("glance", "local")
    for name in ("backbone", "weights", "tsm", "tiny_channels", "tiny_stride"))


def model_field_help() -> List[tuple]:
    """(option name under --model., help) for every ModelConfig field, encoder sub-fields included."""
    from adafocus.model import EncoderConfig, ModelConfig

    defaults = ModelConfig()
    out = [("preset", "named model settings to start from: tiny | paper_tsm | paper_long")]
    for f in dataclasses.fields(ModelConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, EncoderConfig):
            for sub in dataclasses.fields(EncoderConfig):
                out.append((f"{f.name}.{sub.name}", f"{f.name} encoder's {sub.name} (default: {getattr(value, sub.name)!r})"))
        else:
            out.append((f.name, f"ModelConfig.{f.name} (default: {value!r})"))
    return out


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE, plus one --section.field option per config field (with its help)."""
    parser.add_argument("--config", metavar="YAML", help="YAML config file (sections model/data/train/eval); options below override it")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="generic override, e.g. --set train.lr=0.1 (repeatable)")
    group = parser.add_argument_group("model options (adafocus.model.ModelConfig; preset: tiny | paper_tsm | paper_long)")
    for name, text in model_field_help():
        group.add_argument(f"--model.{name}", dest=f"model.{name}", metavar="V", default=None, help=text)
    for name in LEGACY_MODEL_OPTIONS:
        group.add_argument(f"--model.{name}", dest=f"model.{name}", metavar="V", default=None, help=argparse.SUPPRESS)
    for section, klass in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        for f in dataclasses.fields(klass):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", metavar="V", default=None,
                               help=f"{f.metadata.get('help', '')} (default: {default!r})")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Merge: defaults < YAML file < --set < --section.field options."""
    values = load_yaml(getattr(args, "config", None))
    for item in getattr(args, "set", []) or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        set_dotted(values, key.strip(), parse_value(text))
    for key, text in vars(args).items():
        if "." in key and text is not None:
            set_dotted(values, key, parse_value(text))
    return RunConfig.from_dict(values)


def save_yaml(config: RunConfig, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
