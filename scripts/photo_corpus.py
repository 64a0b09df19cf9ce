#!/usr/bin/env python3
"""Build the real-photograph corpus for ``lkd distill lines`` from installable packages.

    python scripts/photo_corpus.py --out runs/lines/photos [--cache runs/lines/photo_packages]

Downloads (with the package managers' own clients, once, into --cache) Debian's ``opencv-doc``
(``apt-get download``; needs ``apt-get update`` to have run) and the ``scikit-image`` wheel
(``pip download --no-deps``), unpacks them and copies the allow-listed photographs and video
frames of :mod:`lkd_perception.lines.photo_corpus` into --out with ``manifest.json`` (source,
version, licence of every image). Pass --opencv-doc-deb / --skimage-wheel to use files you
already have. The corpus is rebuilt, not committed.
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkd_perception.lines.photo_corpus import build_corpus  # noqa: E402

SKIMAGE_VERSION = "0.26.0"


def _one(pattern: str) -> Path | None:
    found = sorted(glob.glob(pattern))
    return Path(found[-1]) if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default="runs/lines/photo_packages", help="where packages are downloaded and unpacked")
    ap.add_argument("--opencv-doc-deb", default=None, help="opencv-doc .deb already downloaded")
    ap.add_argument("--skimage-wheel", default=None, help="scikit-image wheel already downloaded")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    deb = Path(args.opencv_doc_deb) if args.opencv_doc_deb else _one(str(cache / "opencv-doc_*.deb"))
    if deb is None:
        subprocess.run(["apt-get", "download", "opencv-doc"], cwd=cache, check=True)
        deb = _one(str(cache / "opencv-doc_*.deb"))
    whl = Path(args.skimage_wheel) if args.skimage_wheel else _one(str(cache / "scikit_image-*.whl"))
    if whl is None:
        subprocess.run([sys.executable, "-m", "pip", "download", f"scikit-image=={SKIMAGE_VERSION}", "--no-deps",
                        "-d", str(cache)], check=True)
        whl = _one(str(cache / "scikit_image-*.whl"))
    ocv_root, sk_root = cache / "opencv-doc", cache / "scikit-image"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(ocv_root)], check=True)
    with zipfile.ZipFile(whl) as z:
        z.extractall(sk_root, [n for n in z.namelist() if n.startswith("skimage/data/")])
    ocv_version = deb.name.split("_")[1]
    sk_version = whl.name.split("-")[1]
    images = build_corpus(args.out, ocv_root, ocv_version, sk_root, sk_version)
    print(json.dumps({"out": args.out, "images": len(images), "opencv-doc": ocv_version, "scikit-image": sk_version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
