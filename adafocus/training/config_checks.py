"""Checking config values against their fields' types, and the help of the model's fields.

`check_value(value, annotation, name)` returns the value as the field's type or raises
one ValueError naming the field, the value and what was expected. What it accepts:

    int              3, "3"                      (not 1.5, not true)
    float            0.1, 1, "1e-3"              (finite: nan and inf are rejected)
    bool             true/false, yes/no, on/off  (not 1, not "maybe")
    str              any string
    Optional[X]      null (or none, ~) or an X
    tuples, lists    [1, 24, 24], "1,24,24", "[1,24,24]", "(1, 24, 24)"; a single 16 for (16,)
    Dict[str, X]     a mapping ({policy: 2.0}), each value an X
    dataclasses      a mapping of their fields (model.glance / model.local)

`parse_text(text, annotation)` reads one command-line value for such a field: strings
stay as typed (a path like 2024 or 007 is not turned into a number), anything else is
parsed as YAML first.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import typing
from typing import Any, Dict, Iterable, List, Optional

import yaml

TRUE_WORDS = ("true", "yes", "on")
FALSE_WORDS = ("false", "no", "off")
NONE_WORDS = ("null", "none", "~")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _optional_inner(annotation):
    if typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return None


def _sequence_args(annotation):
    """(element types, fixed length or None) for tuple/list annotations, else None."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [args[0]], None
        return list(args), len(args)
    if origin in (list, collections.abc.Sequence):
        return [args[0] if args else Any], None
    return None


def describe(annotation) -> str:
    """What a value of `annotation` looks like, for messages and help."""
    inner = _optional_inner(annotation)
    if inner is not None:
        return f"{describe(inner)} or null"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a finite number"
    if annotation is str:
        return "a string"
    sequence = _sequence_args(annotation)
    if sequence is not None:
        types, length = sequence
        element = describe(types[0]).replace("an integer", "integers").replace("a finite number", "finite numbers")
        if types[0] is int:
            example = "1,24,24" if length == 3 else ",".join(["16", "32", "64", "128"][: length or 2])
        else:
            example = ",".join(["0.5"] * (length or 2))
        count = f"{length} " if length else ""
        return f"a list of {count}{element} (write {example} or [{example}])"
    if typing.get_origin(annotation) is dict:
        return "a mapping such as {key: value}"
    if dataclasses.is_dataclass(annotation):
        return f"a mapping of {annotation.__name__} fields"
    return "a value"


def metavar(annotation) -> str:
    """Short placeholder for an option of this type in --help."""
    inner = _optional_inner(annotation)
    if inner is not None:
        return metavar(inner)
    simple = {bool: "BOOL", int: "INT", float: "FLOAT", str: "STR"}
    if annotation in simple:
        return simple[annotation]
    sequence = _sequence_args(annotation)
    if sequence is not None:
        types, length = sequence
        name = simple.get(types[0], "V")
        return ",".join([name] * length) if length else f"{name}[,{name}...]"
    if typing.get_origin(annotation) is dict:
        return "{K: V}"
    return "V"


def _error(name: str, value: Any, annotation) -> ValueError:
    return ValueError(f"{name}={value!r}: expected {describe(annotation)}")


def _split_list(text: str) -> List[str]:
    body = text.strip()
    if body[:1] in "[(" and body[-1:] in "])":
        body = body[1:-1]
    return [part.strip() for part in body.split(",")] if body.strip() else []


def check_value(value: Any, annotation, name: str) -> Any:
    """`value` as a value of `annotation` (see the module docstring), or a ValueError naming `name`."""
    if annotation is Any:
        return value
    inner = _optional_inner(annotation)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            return None
        try:
            return check_value(value, inner, name)
        except ValueError:
            raise _error(name, value, annotation) from None
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        raise _error(name, value, annotation)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _error(name, value, annotation)
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise _error(name, value, annotation)
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _error(name, value, annotation)
    sequence = _sequence_args(annotation)
    if sequence is not None:
        types, length = sequence
        items = value
        if isinstance(value, str):
            items = _split_list(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            items = [value]
        if not isinstance(items, (list, tuple)) or (length is not None and len(items) != length):
            raise _error(name, value, annotation)
        try:
            checked = [check_value(item, types[i] if length else types[0], f"{name}[{i}]")
                       for i, item in enumerate(items)]
        except ValueError:
            raise _error(name, value, annotation) from None
        return tuple(checked) if typing.get_origin(annotation) is tuple else checked
    if typing.get_origin(annotation) is dict:
        mapping = value
        if isinstance(value, str):
            try:
                mapping = yaml.safe_load(value)
            except yaml.YAMLError:
                mapping = None
        if not isinstance(mapping, dict):
            raise _error(name, value, annotation)
        key_type, value_type = (typing.get_args(annotation) + (Any, Any))[:2]
        return {check_value(k, key_type, name): check_value(v, value_type, f"{name}.{k}") for k, v in mapping.items()}
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _error(name, value, annotation)
        return check_fields(value, annotation, name)
    return value


def field_types(klass) -> Dict[str, Any]:
    """{field name: annotation} of a dataclass (string annotations resolved)."""
    hints = typing.get_type_hints(klass)
    return {f.name: hints[f.name] for f in dataclasses.fields(klass)}


def unknown_field_error(section: str, key: str, known: Iterable[str]) -> ValueError:
    known = sorted(known)
    return ValueError(f"unknown {section} option(s) {[key]}{did_you_mean(key, known)}; known: {known}")


def check_fields(values: Dict[str, Any], fields, section: str) -> Dict[str, Any]:
    """Every key of `values` one of `fields` (a dataclass, or {name: annotation}), each value checked."""
    types = field_types(fields) if dataclasses.is_dataclass(fields) else dict(fields)
    out = {}
    for key, value in values.items():
        if key not in types:
            raise unknown_field_error(section, str(key), types)
        out[key] = check_value(value, types[key], f"{section}.{key}")
    return out


def parse_text(text: Any, annotation) -> Any:
    """One command-line value for a field of `annotation` (see the module docstring)."""
    if not isinstance(text, str):
        return text
    inner = _optional_inner(annotation)
    if annotation is str or inner is str:
        return None if inner is str and text.strip().lower() in NONE_WORDS else text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # check_value then names the field and what it expects


# One help sentence per adafocus.model.ModelConfig / EncoderConfig field (tests check that every field has one).
MODEL_FIELD_HELP = {
    "num_classes": "number of classes the classifier predicts (list-file labels lie in [0, num_classes))",
    "glance": "the glance network fG's encoder (see the model.glance.* options)",
    "glance_frames": "frames the glance network sees, uniformly spread over the sampled clip (<= the clip's frames)",
    "glance_resolution": "side in pixels the glance frames are resized to",
    "local": "the local network fL's encoder (see the model.local.* options)",
    "tsm_fold_div": "temporal shift: 1/tsm_fold_div of the channels shift each way (TSM's fold division)",
    "cube_size": "cube size (Dt, Dh, Dw) in sampled frames and pixels, e.g. 12,128,128 (Dt=1: frame-wise cubes)",
    "num_cubes": "cubes M the policy picks per video (exits 1..M after the glance's exit 0)",
    "policy": "where cube centres come from: learned | random | learned_t | learned_xy (policy on one axis group)",
    "crop_gradient": "how the policy is trained: deep_feature (the paper's Eq. 5-6) | pixel (trilinear pixel crop)",
    "policy_head": "the policy's output: heatmap (soft-argmax over the glance feature map) | sigmoid",
    "policy_channels": "hidden channels of the policy network",
    "embed_width": "width of fC's per-feature embedding (Linear -> BN -> ReLU) of the glance and each cube before the max-pooling; 0 = none (the pooled features)",
    "dropout": "dropout before each exit's classifier, in [0, 1)",
    "loss": "ce (the paper's Eq. 1; multi-hot targets normalised) | bce (independent sigmoids, for mAP)",
    "aux_loss_weight": "weight of an auxiliary loss per encoder (glance frames, each cube); 0 = Eq. 1 only",
    "baseline_frames": "frames the full-video baseline (TSM+) runs fL on at full resolution (null = glance_frames, as the paper's TSM+)",
}
ENCODER_FIELD_HELP = {
    "backbone": "2D backbone applied to every frame: tiny | mobilenet_v2 | resnet18 | resnet50",
    "weights": "local state-dict file of the backbone, read when training starts (never downloaded; checkpoints hold every weight)",
    "tsm": "insert temporal shift modules (TSM) into the backbone",
    "tiny_channels": "tiny backbone only: channels per stage, e.g. 16,32",
    "tiny_stride": "tiny backbone only: total stride, a power of two (the first log2(stride) stages halve the resolution)",
}
