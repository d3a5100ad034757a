"""The paper's datasets' own annotation files -> the project's list files (`adafocus make-lists`).

`convert(format, annotations, root, labels=None, split=None)` reads one split's
annotation file and returns a `Conversion`: one entry per video found under `root`
(path relative to `root`, 0-based labels, the frame count for frame folders), the
class names in index order, and the videos the file lists that are not under `root`.

Formats (the files as the datasets ship them):
    sthv2        something-something-v2-{train,validation}.json: [{id, template, ...}]; the class of
                 an entry is its template without the brackets of [something], indexed by
                 something-something-v2-labels.json ({template: "index"}, --labels, required);
                 videos <id>.webm
    sthv1        something-something-v1-{train,validation}.csv: `id;label` lines; classes one per line
                 in something-something-v1-labels.csv (--labels, required); frame folders <id>/ of
                 %05d.jpg, whose frames are counted
    kinetics     Kinetics / Mini-Kinetics CSV with a header (label, youtube_id, time_start, time_end,
                 split); videos <youtube_id>_<start:06d>_<end:06d>.mp4 or <youtube_id>.mp4 (.mkv and
                 .webm too); classes: --labels (one per line) or every label of the file sorted by name
    activitynet  ActivityNet v1.3 JSON: database {id: {subset, annotations: [{label, ...}]}}; --split
                 training | validation; several distinct labels make a multi-label video; videos
                 v_<id>.mp4 as the official download names them, or <id>.mp4 (.mkv, .webm too); classes:
                 --labels or every label of the database sorted by name
    diving48     Diving48 V2 JSON: [{vid_name, label, ...}] with 0-based labels; videos <vid_name>.mp4;
                 class names from Diving48_vocab.json (--labels) or the class numbers
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from adafocus.data.frames import IMAGE_EXTENSIONS

FORMATS = ("sthv2", "sthv1", "kinetics", "activitynet", "diving48")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")


@dataclass
class Entry:
    path: str  # relative to the root, '/'-separated
    labels: Tuple[int, ...]
    num_frames: Optional[int] = None  # frame folders only


@dataclass
class Conversion:
    entries: List[Entry]
    classes: List[str]
    missing: List[str] = field(default_factory=list)  # what the file lists that is not under the root
    frames: bool = False  # entries are frame folders (lines carry num_frames)


def format_list(conversion: Conversion) -> str:
    """The list file: `path [num_frames] label [label ...]` per line."""
    lines = []
    for entry in conversion.entries:
        fields = [entry.path] + ([str(entry.num_frames)] if conversion.frames else []) + [str(x) for x in entry.labels]
        lines.append(" ".join(fields))
    return "".join(line + "\n" for line in lines)


def _read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); expected {what}") from None


def _read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f]


def _class_index(classes: Sequence[str], source: str) -> Dict[str, int]:
    index = {}
    for i, name in enumerate(classes):
        if name in index:
            raise ValueError(f"{source}: class {name!r} is listed twice (indices {index[name]} and {i})")
        index[name] = i
    if not index:
        raise ValueError(f"{source}: no classes")
    return index


def _label(name: str, index: Dict[str, int], where: str, labels_file: Optional[str]) -> int:
    if name not in index:
        from difflib import get_close_matches

        close = get_close_matches(name, list(index), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        source = f"in {labels_file}" if labels_file else "among the classes"
        raise ValueError(f"{where}: class {name!r} is not {source}{hint}")
    return index[name]


def _class_list_file(path: str) -> List[str]:
    """One class per line (a classes.txt, Sth-Sth V1's labels CSV); blank lines ignored."""
    return [line for line in _read_lines(path) if line]


def _find_video(root: str, names: Iterable[str]) -> Optional[str]:
    for name in names:
        if os.path.isfile(os.path.join(root, name)):
            return name
    return None


def _require(value, message: str):
    if value is None:
        raise ValueError(message)
    return value


def _sthv2(annotations: str, root: str, labels: Optional[str], split: Optional[str]) -> Conversion:
    labels = _require(labels, "sthv2 needs --labels something-something-v2-labels.json (template -> index)")
    table = _read_json(labels, "an object mapping each template to its index")
    if not isinstance(table, dict):
        raise ValueError(f"{labels}: expected an object mapping each template to its index, got {type(table).__name__}")
    try:
        by_index = sorted((int(i), name) for name, i in table.items())
    except (TypeError, ValueError):
        raise ValueError(f"{labels}: every value must be a class index") from None
    if [i for i, _ in by_index] != list(range(len(by_index))):
        raise ValueError(f"{labels}: class indices must be 0..{len(by_index) - 1}, each once")
    classes = [name for _, name in by_index]
    index = _class_index(classes, labels)
    items = _read_json(annotations, "a list of {id, template, ...} entries")
    if not isinstance(items, list):
        raise ValueError(f"{annotations}: expected a list of {{id, template, ...}} entries, got {type(items).__name__}")
    out = Conversion([], classes)
    for n, item in enumerate(items):
        where = f"{annotations} entry {n}"
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{where}: expected an object with an id, got {item!r}")
        if "template" not in item:
            raise ValueError(f"{where} (id {item['id']}) has no template, so no label (the unlabelled test split?)")
        name = str(item["template"]).replace("[", "").replace("]", "")
        label = _label(name, index, f"{where} (id {item['id']})", labels)
        video = f"{item['id']}.webm"
        if os.path.isfile(os.path.join(root, video)):
            out.entries.append(Entry(video, (label,)))
        else:
            out.missing.append(video)
    return out


def _count_frames(folder: str) -> int:
    return sum(1 for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))


def _sthv1(annotations: str, root: str, labels: Optional[str], split: Optional[str]) -> Conversion:
    labels = _require(labels, "sthv1 needs --labels something-something-v1-labels.csv (one class per line)")
    classes = _class_list_file(labels)
    index = _class_index(classes, labels)
    out = Conversion([], classes, frames=True)
    for n, line in enumerate(_read_lines(annotations), 1):
        if not line:
            continue
        where = f"{annotations}:{n}"
        video, sep, name = line.partition(";")
        if not sep or not video.strip():
            raise ValueError(f"{where}: expected 'id;label', got {line!r}")
        video = video.strip()
        label = _label(name.strip(), index, where, labels)
        folder = os.path.join(root, video)
        count = _count_frames(folder) if os.path.isdir(folder) else 0
        if count:
            out.entries.append(Entry(video, (label,), count))
        else:
            out.missing.append(video + "/")
    return out


def _kinetics(annotations: str, root: str, labels: Optional[str], split: Optional[str]) -> Conversion:
    with open(annotations, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"youtube_id", "time_start", "time_end"}
    columns = set(rows[0]) if rows else set()
    if not rows or not needed <= columns:
        raise ValueError(f"{annotations}: expected a CSV with a header naming label, youtube_id, time_start, time_end "
                         f"(and split), got columns {sorted(columns)}")
    if "label" not in columns:
        raise ValueError(f"{annotations} has no label column (the unlabelled test split?)")
    classes = _class_list_file(labels) if labels else sorted({row["label"].strip() for row in rows})
    index = _class_index(classes, labels or annotations)
    if split is not None:
        if "split" not in columns:
            raise ValueError(f"--split {split}: {annotations} has no split column")
        found = sorted({row["split"] for row in rows})
        rows = [row for row in rows if row["split"] == split]
        if not rows:
            raise ValueError(f"--split {split}: no row of {annotations} has that split (it has {', '.join(found)})")
    out = Conversion([], classes)
    for n, row in enumerate(rows, 2):
        where = f"{annotations}:{n}"
        youtube_id = row["youtube_id"].strip()
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: time_start and time_end must be numbers, got {row['time_start']!r}, "
                             f"{row['time_end']!r}") from None
        label = _label(row["label"].strip(), index, where, labels)
        stems = (f"{youtube_id}_{start:06d}_{end:06d}", youtube_id)
        video = _find_video(root, [stem + suffix for stem in stems for suffix in VIDEO_SUFFIXES])
        if video:
            out.entries.append(Entry(video, (label,)))
        else:
            out.missing.append(stems[0] + ".mp4")
    return out


def _activitynet(annotations: str, root: str, labels: Optional[str], split: Optional[str]) -> Conversion:
    subsets = ("training", "validation")
    if split not in subsets:
        raise ValueError(f"activitynet needs --split training or validation, got {split!r} (the testing subset has no labels)")
    data = _read_json(annotations, "ActivityNet's {database: {id: {subset, annotations}}}")
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ValueError(f"{annotations}: expected ActivityNet's {{database: {{id: {{subset, annotations}}}}}} layout")

    def names(entry) -> List[str]:
        return [str(a["label"]) for a in entry.get("annotations") or [] if isinstance(a, dict) and "label" in a]

    classes = _class_list_file(labels) if labels else sorted({n for e in database.values() for n in names(e)})
    index = _class_index(classes, labels or annotations)
    out = Conversion([], classes)
    for video_id, entry in database.items():
        if entry.get("subset") != split:
            continue
        found = names(entry)
        if not found:
            raise ValueError(f"{annotations}: {split} video {video_id} has no labelled annotation")
        label_ids = tuple(sorted({_label(n, index, f"{annotations}: video {video_id}", labels) for n in found}))
        stems = (f"v_{video_id}", video_id)
        video = _find_video(root, [stem + suffix for stem in stems for suffix in VIDEO_SUFFIXES])
        if video:
            out.entries.append(Entry(video, label_ids))
        else:
            out.missing.append(stems[0] + ".mp4")
    return out


def _diving48(annotations: str, root: str, labels: Optional[str], split: Optional[str]) -> Conversion:
    items = _read_json(annotations, "a list of {vid_name, label, ...} entries")
    if not isinstance(items, list):
        raise ValueError(f"{annotations}: expected a list of {{vid_name, label, ...}} entries, got {type(items).__name__}")
    classes = None
    if labels:
        vocab = _read_json(labels, "Diving48_vocab.json: one list of sub-labels per class")
        if not isinstance(vocab, list) or not vocab:
            raise ValueError(f"{labels}: expected a list with one entry (a list of sub-labels) per class")
        classes = [" ".join(map(str, c)) if isinstance(c, list) else str(c) for c in vocab]
    out = Conversion([], [])
    top = -1
    for n, item in enumerate(items):
        where = f"{annotations} entry {n}"
        if not isinstance(item, dict) or "vid_name" not in item or "label" not in item:
            raise ValueError(f"{where}: expected an object with vid_name and label, got {item!r}")
        label = item["label"]
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise ValueError(f"{where} ({item['vid_name']}): label must be an integer >= 0, got {label!r}")
        if classes is not None and label >= len(classes):
            raise ValueError(f"{where} ({item['vid_name']}): label {label} is outside the {len(classes)} classes of {labels}")
        top = max(top, label)
        video = f"{item['vid_name']}.mp4"
        if os.path.isfile(os.path.join(root, video)):
            out.entries.append(Entry(video, (label,)))
        else:
            out.missing.append(video)
    out.classes = classes if classes is not None else [str(i) for i in range(top + 1)]
    return out


_CONVERTERS = {"sthv2": _sthv2, "sthv1": _sthv1, "kinetics": _kinetics, "activitynet": _activitynet,
               "diving48": _diving48}


def convert(format: str, annotations: str, root: str, labels: Optional[str] = None,
            split: Optional[str] = None) -> Conversion:
    """One split's annotations as list entries (see the module docstring)."""
    if format not in _CONVERTERS:
        raise ValueError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    for option, path in (("--annotations", annotations), ("--labels", labels)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{option} {path}: no such file")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--root {root}: no such folder")
    if split is not None and format in ("sthv2", "sthv1", "diving48"):
        raise ValueError(f"--split is not used by {format} (its annotation files are one per split)")
    return _CONVERTERS[format](annotations, root, labels, split)
