"""`adafocus make-lists`: a dataset's own annotation files -> a list file and classes.txt beside it.

The conversion is adafocus.data.annotations'. The list and classes.txt are written
atomically; the videos the annotations name but --root lacks are left out, counted,
and written to `<list>.missing.txt`. A classes.txt already beside the list with other
classes is an error (the lists of one dataset must share their class indices: convert
the other splits with `--labels` that file).
"""
from __future__ import annotations

import os
from typing import Optional

from adafocus.data.annotations import convert, format_list
from adafocus.utils.files import atomic_write

CLASSES_FILE = "classes.txt"


def run_make_lists(format: str, annotations: str, root: str, out: str, labels: Optional[str] = None,
                   split: Optional[str] = None, print_summary: bool = True) -> dict:
    conversion = convert(format, annotations, root, labels=labels, split=split)
    if not conversion.entries:
        example = f" (e.g. {conversion.missing[0]})" if conversion.missing else ""
        raise ValueError(f"none of the {len(conversion.missing)} videos {annotations} lists is under --root {root}"
                         f"{example}: check --root")
    classes_path = os.path.join(os.path.dirname(os.path.abspath(out)), CLASSES_FILE)
    classes_text = "".join(name + "\n" for name in conversion.classes)
    if os.path.isfile(classes_path):
        with open(classes_path, encoding="utf-8") as f:
            if f.read() != classes_text:
                raise ValueError(f"{classes_path} already lists other classes; pass --labels {classes_path} so this "
                                 "list uses the same class indices, or write the list to another folder")
    with atomic_write(out, encoding="utf-8") as f:
        f.write(format_list(conversion))
    with atomic_write(classes_path, encoding="utf-8") as f:
        f.write(classes_text)
    missing_path = out + ".missing.txt"
    if conversion.missing:
        with atomic_write(missing_path, encoding="utf-8") as f:
            f.write("".join(name + "\n" for name in conversion.missing))
    elif os.path.exists(missing_path):
        os.remove(missing_path)  # from an earlier run: nothing is missing now
    summary = {"list": out, "videos": len(conversion.entries), "classes": len(conversion.classes),
               "classes_file": classes_path, "missing": len(conversion.missing),
               "missing_file": missing_path if conversion.missing else None,
               "multi_label": any(len(e.labels) > 1 for e in conversion.entries), "frames": conversion.frames}
    if print_summary:
        kind = "frame folders" if conversion.frames else "videos"
        print(f"wrote {summary['videos']} {kind} to {out} and {summary['classes']} classes to {classes_path}")
        if conversion.missing:
            print(f"{summary['missing']} listed {kind} are not under {root} and were left out "
                  f"(e.g. {', '.join(conversion.missing[:3])}); all of them are in {missing_path}")
        if summary["multi_label"]:
            print("some videos have several labels: train with --data.multi_label true")
    return summary
