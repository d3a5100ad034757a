"""`adafocus make-lists`: tiny annotation files of each dataset's own format -> list files + classes.txt."""
import json

import pytest

from adafocus.apps.cli import main
from adafocus.data import parse_list_file


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0")


def _make_lists(capsys, *args):
    code = main(["make-lists", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_sthv2(tmp_path, capsys):
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({"Holding something": "1", "Pushing something from left to right": "0",
                                  "Putting something on a surface": "2"}))
    train = tmp_path / "something-something-v2-train.json"
    train.write_text(json.dumps([
        {"id": "78687", "label": "holding potato", "template": "Holding [something]", "placeholders": ["potato"]},
        {"id": "42326", "label": "pushing a cup", "template": "Pushing [something] from left to right"},
        {"id": "100", "label": "putting a pen on a table", "template": "Putting [something] on a surface"},
        {"id": "555", "label": "not downloaded", "template": "Holding [something]"}]))
    root = tmp_path / "videos"
    _touch(root, "78687.webm", "42326.webm", "100.webm")
    out = tmp_path / "lists" / "train.txt"
    code, printed, _ = _make_lists(capsys, "--format", "sthv2", "--annotations", train, "--labels", labels,
                                   "--root", root, "--out", out)
    assert code == 0
    assert out.read_text() == "78687.webm 1\n42326.webm 0\n100.webm 2\n"
    assert (tmp_path / "lists" / "classes.txt").read_text().splitlines() == [
        "Pushing something from left to right", "Holding something", "Putting something on a surface"]
    assert "1 listed videos are not under" in printed and "555.webm" in printed
    assert (tmp_path / "lists" / "train.txt.missing.txt").read_text() == "555.webm\n"
    assert [r.labels for r in parse_list_file(str(out), has_num_frames=False, num_classes=3)] == [(1,), (0,), (2,)]

    test_split = tmp_path / "something-something-v2-test.json"
    test_split.write_text(json.dumps([{"id": "1"}]))
    code, _, err = _make_lists(capsys, "--format", "sthv2", "--annotations", test_split, "--labels", labels,
                               "--root", root, "--out", tmp_path / "test.txt")
    assert code == 2 and "has no template" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "78687", "template": "Holdin [something]"}]))
    code, _, err = _make_lists(capsys, "--format", "sthv2", "--annotations", bad, "--labels", labels,
                               "--root", root, "--out", tmp_path / "bad.txt")
    assert code == 2 and "'Holdin something'" in err and "did you mean 'Holding something'" in err


def test_sthv1_counts_frames(tmp_path, capsys):
    labels = tmp_path / "something-something-v1-labels.csv"
    labels.write_text("Holding something\nPushing something\n\n")
    train = tmp_path / "something-something-v1-train.csv"
    train.write_text("100218;Pushing something\n5;Holding something\n7;Holding something\n")
    root = tmp_path / "frames"
    _touch(root, *[f"100218/{i:05d}.jpg" for i in range(1, 38)], *[f"5/{i:05d}.jpg" for i in range(1, 12)])
    (root / "7").mkdir()  # an empty folder counts as missing
    out = tmp_path / "train.txt"
    code, printed, _ = _make_lists(capsys, "--format", "sthv1", "--annotations", train, "--labels", labels,
                                   "--root", root, "--out", out)
    assert code == 0 and out.read_text() == "100218 37 1\n5 11 0\n"
    assert "2 frame folders" in printed and "7/" in printed
    records = parse_list_file(str(out), has_num_frames=True, num_classes=2)
    assert [(r.path, r.num_frames, r.labels) for r in records] == [("100218", 37, (1,)), ("5", 11, (0,))]


def test_kinetics_names_splits_and_class_list(tmp_path, capsys):
    csv = tmp_path / "kinetics.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   '"air drumming",abc123,14,24,train\n'
                   "abseiling,zzz999,0.0,10.0,train\n"
                   "abseiling,val001,3,13,val\n"
                   "zumba,gone000,5,15,train\n")
    root = tmp_path / "videos"
    _touch(root, "abc123_000014_000024.mp4", "zzz999.mkv", "val001_000003_000013.mp4")
    out = tmp_path / "k" / "train.txt"
    code, printed, _ = _make_lists(capsys, "--format", "kinetics", "--annotations", csv, "--root", root,
                                   "--out", out, "--split", "train")
    assert code == 0
    assert out.read_text() == "abc123_000014_000024.mp4 1\nzzz999.mkv 0\n"
    assert (tmp_path / "k" / "classes.txt").read_text() == "abseiling\nair drumming\nzumba\n"  # every label, by name
    assert "gone000_000005_000015.mp4" in printed
    val = tmp_path / "k" / "val.txt"
    assert _make_lists(capsys, "--format", "kinetics", "--annotations", csv, "--root", root, "--out", val,
                       "--split", "val", "--labels", tmp_path / "k" / "classes.txt")[0] == 0
    assert val.read_text() == "val001_000003_000013.mp4 0\n"
    code, _, err = _make_lists(capsys, "--format", "kinetics", "--annotations", csv, "--root", root,
                               "--out", tmp_path / "x.txt", "--split", "tset")
    assert code == 2 and "no row" in err and "train, val" in err


def test_activitynet_multi_label_and_official_names(tmp_path, capsys):
    annotations = tmp_path / "activity_net.v1-3.min.json"
    annotations.write_text(json.dumps({"version": "VERSION 1.3", "database": {
        "aaa": {"subset": "training", "annotations": [{"label": "Surfing", "segment": [0, 5]},
                                                      {"label": "Surfing", "segment": [9, 12]}]},
        "bbb": {"subset": "training", "annotations": [{"label": "Cooking", "segment": [1, 2]},
                                                      {"label": "Surfing", "segment": [3, 4]}]},
        "ccc": {"subset": "validation", "annotations": [{"label": "Archery", "segment": [0, 1]}]},
        "ddd": {"subset": "testing", "annotations": []},
        "eee": {"subset": "training", "annotations": [{"label": "Cooking", "segment": [0, 1]}]}}}))
    root = tmp_path / "videos"
    _touch(root, "v_aaa.mp4", "bbb.webm", "v_ccc.mkv")
    out = tmp_path / "train.txt"
    code, printed, _ = _make_lists(capsys, "--format", "activitynet", "--annotations", annotations, "--root", root,
                                   "--out", out, "--split", "training")
    assert code == 0
    assert out.read_text() == "v_aaa.mp4 2\nbbb.webm 1 2\n"  # classes sorted over every subset: Archery is 0
    assert (tmp_path / "classes.txt").read_text().splitlines() == ["Archery", "Cooking", "Surfing"]
    assert "v_eee.mp4" in printed and "--data.multi_label true" in printed
    assert parse_list_file(str(out), has_num_frames=False, num_classes=3)[1].labels == (1, 2)
    code, _, err = _make_lists(capsys, "--format", "activitynet", "--annotations", annotations, "--root", root,
                               "--out", tmp_path / "t.txt", "--split", "testing")
    assert code == 2 and "training or validation" in err


def test_diving48_with_and_without_vocab(tmp_path, capsys):
    annotations = tmp_path / "Diving48_V2_train.json"
    annotations.write_text(json.dumps([{"vid_name": "-mmq0PT-u8k_0", "label": 2, "start_frame": 0, "end_frame": 84},
                                       {"vid_name": "abc_1", "label": 0, "start_frame": 0, "end_frame": 50}]))
    root = tmp_path / "rgb"
    _touch(root, "-mmq0PT-u8k_0.mp4", "abc_1.mp4")
    out = tmp_path / "a" / "train.txt"
    assert _make_lists(capsys, "--format", "diving48", "--annotations", annotations, "--root", root, "--out", out)[0] == 0
    assert out.read_text() == "-mmq0PT-u8k_0.mp4 2\nabc_1.mp4 0\n"
    assert (tmp_path / "a" / "classes.txt").read_text() == "0\n1\n2\n"
    vocab = tmp_path / "Diving48_vocab.json"
    vocab.write_text(json.dumps([["Back", "15som", "05Twis", "FREE"], ["Back", "15som", "15Twis", "FREE"],
                                 ["Back", "15som", "25Twis", "FREE"]]))
    out = tmp_path / "b" / "train.txt"
    assert _make_lists(capsys, "--format", "diving48", "--annotations", annotations, "--labels", vocab, "--root", root,
                       "--out", out)[0] == 0
    assert (tmp_path / "b" / "classes.txt").read_text().splitlines()[2] == "Back 15som 25Twis FREE"


def test_errors_are_one_line(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    broken = tmp_path / "broken.json"
    broken.write_text("[{\"vid_name\": ")
    cases = [
        (["--format", "diving48", "--annotations", broken], "broken.json: not valid JSON"),
        (["--format", "diving48", "--annotations", tmp_path / "none.json"], "--annotations .*none.json: no such file"),
        (["--format", "sthv2", "--annotations", broken], "sthv2 needs --labels"),
        (["--format", "sthv1", "--annotations", broken, "--split", "train", "--labels", broken], "--split is not used"),
    ]
    import re

    for args, message in cases:
        code, _, err = _make_lists(capsys, *args, "--root", root, "--out", tmp_path / "out.txt")
        assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1, err
    empty = tmp_path / "d.json"
    empty.write_text(json.dumps([{"vid_name": "x", "label": 0}]))
    code, _, err = _make_lists(capsys, "--format", "diving48", "--annotations", empty, "--root", root, "--out",
                               tmp_path / "out.txt")
    assert code == 2 and "check --root" in err


def test_a_different_class_list_beside_the_list_is_refused(tmp_path, capsys):
    csv = tmp_path / "k.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nb,x1,0,10,train\na,x2,0,10,val\n")
    root = tmp_path / "v"
    _touch(root, "x1.mp4", "x2.mp4")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "classes.txt").write_text("b\n")
    code, _, err = _make_lists(capsys, "--format", "kinetics", "--annotations", csv, "--root", root,
                               "--out", tmp_path / "lists" / "train.txt", "--split", "train")
    assert code == 2 and "already lists other classes" in err and "--labels" in err
    assert not (tmp_path / "lists" / "train.txt").exists()
