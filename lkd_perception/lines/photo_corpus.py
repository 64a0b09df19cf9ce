"""A corpus of real, unlabelled photographs for distilling the line network (``lkd distill lines``).

Distillation needs real images but no labels: the Wireframe LSDNet labels them. Nothing here is
fetched at run time; the photographs come from packages this machine's ordinary clients install
(``scripts/photo_corpus.py`` downloads and unpacks them, then calls :func:`build_corpus`):

* Debian ``opencv-doc``: OpenCV's sample images and the frames of ``vtest.avi`` (a street scene);
  Debian's ``copyright`` file puts ``Files: *`` under Apache-2.0 AND BSD-3-Clause;
* the ``scikit-image`` wheel (PyPI): the photographs it ships, each with the licence its
  ``skimage.data`` docstring states.

Only the files listed below are taken (an allow-list, so every image has a recorded licence), and
the scenes of our labelled line fixtures are left out on purpose: the test and validation
photographs (``test/fixtures/lines_real*``) and other shots of the same objects (the chessboard
series, the cookie box) must not be seen in training, or the measurement would not be held out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from lkd_perception.common.errors import InputError

OPENCV_DOC_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_LICENCE = ("Apache-2.0 AND BSD-3-Clause (Debian opencv-doc copyright, Files: *; OpenCV sample data, "
                  "photographer not recorded)")

#: OpenCV sample photographs taken (file names inside OPENCV_DOC_DATA)
OPENCV_PHOTOS = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
    "basketball2.png", "board.jpg", "building.jpg", "butterfly.jpg", "cards.png", "ela_original.jpg",
    "fruits.jpg", "graf1.png", "graf3.png", "HappyFish.jpg", "home.jpg", "leuvenA.jpg", "leuvenB.jpg",
    "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "rubberwhale2.png",
    "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
)
#: OpenCV sample videos whose frames are taken: (file, every n-th frame)
OPENCV_VIDEOS = (("vtest.avi", 20),)

#: scikit-image photographs taken: file inside the wheel -> licence stated by skimage.data
SKIMAGE_PHOTOS = {
    "skimage/data/astronaut.png": "public domain (NASA), per skimage.data.astronaut",
    "skimage/data/brick.png": "CC0 (CC0Textures Bricks25), per skimage.data.brick",
    "skimage/data/chelsea.png": "CC0 by the photographer (Stefan van der Walt), per skimage.data.chelsea",
    "skimage/data/clock_motion.png": "public domain by the photographer (Stefan van der Walt), per skimage.data.clock",
    "skimage/data/coffee.png": "CC0 by the photographer (Rachel Michetti), per skimage.data.coffee",
    "skimage/data/grass.png": "CC0 (CC0Textures), per skimage.data.grass",
    "skimage/data/gravel.png": "CC0 (CC0Textures Gravel04), per skimage.data.gravel",
}

#: left out on purpose, with the reason (see module docstring)
EXCLUDED = {
    "box.png, sudoku.png, left01.jpg (opencv-doc); camera.png, rocket.jpg (scikit-image)": "test photographs",
    "left02.jpg, right02.jpg, blox.jpg, box_in_scene.png (opencv-doc)": "validation photographs",
    "left*.jpg, right*.jpg, chessboard.png (opencv-doc); chessboard_*.png (scikit-image)":
        "the test/validation chessboard, other shots",
}


@dataclass(frozen=True)
class CorpusImage:
    """One image of the corpus: where it came from and under which licence."""

    file: str
    package: str
    version: str
    source_path: str
    licence: str


def _write(img_bgr: np.ndarray, out: Path, name: str) -> str:
    path = out / name
    if not cv2.imwrite(str(path), img_bgr):
        raise InputError(f"cannot write {path}")
    return name


def build_corpus(
    out: str | Path,
    opencv_doc_root: str | Path | None = None,
    opencv_doc_version: str = "",
    skimage_root: str | Path | None = None,
    skimage_version: str = "",
) -> list[CorpusImage]:
    """Copy the allow-listed photographs (as PNG) and video frames into ``out`` and write
    ``out/manifest.json`` (one record per image, licence included). ``opencv_doc_root`` is the
    unpacked ``opencv-doc`` package (the folder holding ``usr/``), ``skimage_root`` the unpacked
    wheel (the folder holding ``skimage/``). A listed file missing from its package is an
    :class:`InputError`: a corpus silently smaller than documented would change the training."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images: list[CorpusImage] = []
    if opencv_doc_root is not None:
        data = Path(opencv_doc_root) / OPENCV_DOC_DATA
        for name in OPENCV_PHOTOS:
            img = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"opencv-doc photograph missing or unreadable: {data / name}")
            file = _write(img, out, f"opencv_{Path(name).stem}.png")
            images.append(CorpusImage(file, "opencv-doc (Debian)", opencv_doc_version,
                                      f"{OPENCV_DOC_DATA}/{name}", OPENCV_LICENCE))
        for name, every in OPENCV_VIDEOS:
            cap = cv2.VideoCapture(str(data / name))
            if not cap.isOpened():
                raise InputError(f"opencv-doc video missing or unreadable: {data / name}")
            k = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if k % every == 0:
                    file = _write(frame, out, f"opencv_{Path(name).stem}_{k:04d}.png")
                    images.append(CorpusImage(file, "opencv-doc (Debian)", opencv_doc_version,
                                              f"{OPENCV_DOC_DATA}/{name}#frame={k}", OPENCV_LICENCE))
                k += 1
            cap.release()
            if k == 0:
                raise InputError(f"no frame decoded from {data / name}")
    if skimage_root is not None:
        for rel, licence in SKIMAGE_PHOTOS.items():
            img = cv2.imread(str(Path(skimage_root) / rel), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"scikit-image photograph missing or unreadable: {Path(skimage_root) / rel}")
            file = _write(img, out, f"skimage_{Path(rel).stem}.png")
            images.append(CorpusImage(file, "scikit-image (PyPI wheel)", skimage_version, rel, licence))
    if not images:
        raise InputError("no source given: pass the unpacked opencv-doc package and/or scikit-image wheel")
    manifest = {"images": [asdict(i) for i in images], "excluded": EXCLUDED}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return images


def read_corpus(folder: str | Path) -> list[tuple[CorpusImage, np.ndarray]]:
    """The corpus's images (uint8 RGB) with their records, from ``folder/manifest.json``."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise InputError(f"photo corpus manifest not found: {path} (make it with scripts/photo_corpus.py)")
    out = []
    for rec in json.loads(path.read_text())["images"]:
        img = cv2.imread(str(folder / rec["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"corpus image missing or unreadable: {folder / rec['file']}")
        out.append((CorpusImage(**rec), cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    if not out:
        raise InputError(f"photo corpus {folder} is empty")
    return out
