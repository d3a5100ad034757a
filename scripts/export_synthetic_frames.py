"""Write synthetic videos as frame folders + list files, the layout real datasets use.

    python scripts/export_synthetic_frames.py --out data/example --train 300 --val 100 --test 100

gives data/example/frames/<split>_<i>/img_00001.jpg ... and data/example/{train,val,test}.txt
with lines `path num_frames label` (TSN/TSM format), so the README's real-data commands can be
tried without downloading anything.
"""
import argparse
import os

from PIL import Image

from adafocus.data.synthetic import SyntheticConfig, render_video


def export(out: str, sizes: dict, seed: int) -> None:
    config = SyntheticConfig(seed=seed)
    for split, count in sizes.items():
        lines = []
        for index in range(count):
            video, label, _, _ = render_video(config, split, index)
            rel = os.path.join(f"{split}_{index:05d}")
            folder = os.path.join(out, "frames", rel)
            os.makedirs(folder, exist_ok=True)
            for t, frame in enumerate(video):
                Image.fromarray(frame).save(os.path.join(folder, f"img_{t + 1:05d}.jpg"), quality=95)
            lines.append(f"{rel} {len(video)} {label}")
        with open(os.path.join(out, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{split}: {count} videos -> {os.path.join(out, split + '.txt')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export(args.out, {"train": args.train, "val": args.val, "test": args.test}, args.seed)


if __name__ == "__main__":
    main()
