"""A seeded benchmark dataset with ground-truth boxes, built from Fashion-MNIST and scikit-image photos.

Training images are centred objects; test images are larger canvases with one object placed
off-centre at a random position and scale, on a dimmed patch of a real photo, among fragments
of other classes (as in Cluttered MNIST). The output is a Food-101-style root::

    images/<class>/<id>.png     meta/classes.txt  meta/train.txt  meta/test.txt  (lines <class>/<id>.png)
    boxes.json                  {"<class>/<id>.png": [x, y, w, h], ...} for every test image
    meta/benchdata.json         the parameters it was made with

The same parameters and seed give byte-identical files. Fashion-MNIST comes from the Debian
package ``dataset-fashion-mnist``; train images use its train split, test canvases its test split.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcnx.backbones.checkpoint import MAX_INPUT_SIZE
from fcnx.errors import FcnxError, UsageError
from fcnx.io.files import check_folder_path

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("t_shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket")  # bundled in scikit-image's wheel
BACKGROUND_GAIN = 0.5  # photos are dimmed so that objects stand out as they do in real photos
INK = 0.1  # object pixels above this share of white belong to its box


@dataclass(frozen=True)
class BenchConfig:
    """What a benchmark dataset is made of. Sizes are in pixels; ranges are ``(low, high)`` uniform."""

    seed: int = 0
    num_classes: int = 10
    train_per_class: int = 60
    test_per_class: int = 20
    size: int = 56  # training image side: the tiny nets' kernel
    train_object: tuple[float, float] = (0.8, 1.0)  # object frame side / size, training images
    test_object: tuple[float, float] = (0.7, 1.3)  # object frame side / size, test canvases
    canvas: tuple[float, float] = (2.0, 4.0)  # canvas side / object frame side, per axis
    fragments: tuple[int, int] = (2, 6)  # distractor fragments per canvas
    min_offset: float = 0.15  # object centre at least this share of the short side from the canvas centre

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(CLASSES):
            raise UsageError(f"num_classes must be in [2, {len(CLASSES)}], got {self.num_classes}")
        if self.train_per_class < 0 or self.test_per_class < 0:
            raise UsageError("images per class must be >= 0")
        if not 16 <= self.size <= MAX_INPUT_SIZE:  # as train --size: canvases are several times larger a side
            raise UsageError(f"size must be in [16, {MAX_INPUT_SIZE}] (no net is trained larger), got {self.size}")
        if self.canvas[0] < 1.0 or self.canvas[1] < self.canvas[0]:
            raise UsageError(f"canvas factors must satisfy 1 <= low <= high, got {self.canvas}")


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file (unsigned bytes) as a numpy array."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FcnxError(
            "Fashion-MNIST file missing; install the Debian package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist)",
            path,
        ) from None
    except (OSError, EOFError) as exc:
        raise FcnxError(f"not a readable gzipped IDX file ({exc})", path) from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise FcnxError("not an IDX file of unsigned bytes", path)
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise FcnxError(f"IDX header says {shape} but holds {body.size} bytes", path)
    return body.reshape(shape)


def load_fashion_mnist(split: str, source: Path = FASHION_MNIST) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` (``train`` or ``test``): ``N x 28 x 28`` uint8 images and ``N`` labels."""
    images_file, labels_file = FASHION_FILES[split]
    images, labels = read_idx(Path(source) / images_file), read_idx(Path(source) / labels_file)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise FcnxError(f"images {images.shape} and labels {labels.shape} do not match", Path(source) / labels_file)
    return images, labels


def load_photos() -> list[np.ndarray]:
    """The background photos as ``H x W x 3`` uint8 arrays."""
    try:
        from skimage import data
    except ImportError:
        raise FcnxError("benchmark backgrounds need scikit-image (pip install scikit-image)") from None
    return [np.ascontiguousarray(getattr(data, name)()[:, :, :3]) for name in PHOTOS]


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def background(rng: np.random.Generator, photos: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """A random patch of a random photo with the canvas' aspect, resized, maybe mirrored, dimmed (float RGB)."""
    photo = photos[rng.integers(len(photos))]
    ph, pw = photo.shape[:2]
    cw = max(8, round(rng.uniform(0.25, 1.0) * min(pw, ph * width / height)))
    ch = max(8, min(ph, round(cw * height / width)))
    x, y = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
    patch = _resize(photo[y : y + ch, x : x + cw], width, height)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch.astype(np.float32) * BACKGROUND_GAIN


def paint(
    canvas: np.ndarray, item: np.ndarray, x: int, y: int, width: int, height: int, tint: np.ndarray
) -> tuple[int, int, int, int]:
    """Blend a grey ``item`` resized to ``width x height`` onto ``canvas`` at ``(x, y)``, coloured by ``tint``.

    Returns the tight box ``(x, y, w, h)`` of its ink (pixels above :data:`INK`), clipped to the canvas.
    """
    ink = _resize(item, width, height).astype(np.float32) / 255.0
    ch, cw = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(cw, x + width), min(ch, y + height)
    ink = ink[y0 - y : y1 - y, x0 - x : x1 - x]
    alpha = np.clip(2.0 * ink, 0.0, 1.0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region[...] = region * (1.0 - alpha) + alpha * ink[..., None] * tint
    rows, cols = np.nonzero((ink > INK).any(axis=1))[0], np.nonzero((ink > INK).any(axis=0))[0]
    if rows.size == 0:
        return x0, y0, 0, 0
    return x0 + int(cols[0]), y0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _tint(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(160.0, 255.0, size=3).astype(np.float32)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def train_image(rng: np.random.Generator, item: np.ndarray, photos: list[np.ndarray], cfg: BenchConfig) -> np.ndarray:
    """A ``size x size`` image with ``item`` centred on a photo background."""
    canvas = background(rng, photos, cfg.size, cfg.size)
    side = round(cfg.size * rng.uniform(*cfg.train_object))
    start = (cfg.size - side) // 2
    paint(canvas, item, start, start, side, side, _tint(rng))
    return canvas.round().astype(np.uint8)


def test_canvas(
    rng: np.random.Generator, item: np.ndarray, others: np.ndarray, photos: list[np.ndarray], cfg: BenchConfig
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A cluttered canvas with ``item`` off-centre, and the item's box; ``others`` feed the fragments."""
    side = round(cfg.size * rng.uniform(*cfg.test_object))
    width, height = (round(side * rng.uniform(*cfg.canvas)) for _ in range(2))
    canvas = background(rng, photos, height, width)
    far = cfg.min_offset * min(width, height)
    for _ in range(50):  # off-centre: reject positions too close to the centre
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        if np.hypot(x + side / 2 - width / 2, y + side / 2 - height / 2) >= far:
            break
    frame = (x, y, side, side)
    for _ in range(int(rng.integers(cfg.fragments[0], cfg.fragments[1] + 1))):
        piece = others[rng.integers(len(others))]
        fs = int(rng.integers(10, 17))  # fragment side in Fashion-MNIST pixels
        fx, fy = (int(v) for v in rng.integers(0, 28 - fs + 1, size=2))
        fside = max(2, round(fs * side / 28))
        for _ in range(20):  # fragments stay off the object's frame
            px, py = int(rng.integers(0, width - fside + 1)), int(rng.integers(0, height - fside + 1))
            if not _overlaps((px, py, fside, fside), frame):
                paint(canvas, piece[fy : fy + fs, fx : fx + fs], px, py, fside, fside, _tint(rng))
                break
    box = paint(canvas, item, x, y, side, side, _tint(rng))
    return canvas.round().astype(np.uint8), box


def _pick(rng: np.random.Generator, labels: np.ndarray, label: int, count: int) -> np.ndarray:
    pool = np.flatnonzero(labels == label)
    if count > len(pool):
        raise UsageError(f"class {CLASSES[label]} has only {len(pool)} images, {count} asked")
    return np.sort(rng.choice(pool, size=count, replace=False))


def _save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG", optimize=False, compress_level=6)


def _write_boxes(path: Path, boxes: dict[str, list[int]]) -> None:
    """``boxes.json``: one ``"<class>/<id>.png": [x, y, w, h]`` entry per line."""
    body = ",\n".join(f" {json.dumps(rel)}: {json.dumps(box)}" for rel, box in boxes.items())
    path.write_text("{\n" + body + "\n}\n", encoding="utf-8")


def generate(out: str | Path, cfg: BenchConfig = BenchConfig(), source: str | Path = FASHION_MNIST) -> dict[str, int]:
    """Write the benchmark dataset to ``out`` (which must not exist, or be empty); returns image counts.

    Deterministic: the same ``cfg`` and Fashion-MNIST files give byte-identical output.
    """
    out = Path(out)
    check_folder_path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError("output exists and is not an empty folder; choose a new one", out)
    train_x, train_y = load_fashion_mnist("train", Path(source))
    test_x, test_y = load_fashion_mnist("test", Path(source))
    photos = load_photos()
    rng = np.random.default_rng(cfg.seed)
    classes = CLASSES[: cfg.num_classes]
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    lines: dict[str, list[str]] = {"train": [], "test": []}
    boxes: dict[str, list[int]] = {}
    for split, xs, ys, per_class in (
        ("train", train_x, train_y, cfg.train_per_class),
        ("test", test_x, test_y, cfg.test_per_class),
    ):
        number = 0
        for label, name in enumerate(classes):
            others = xs[np.isin(ys, [c for c in range(cfg.num_classes) if c != label])]
            for index in _pick(rng, ys, label, per_class):
                rel = f"{name}/{split}_{number:05d}.png"
                number += 1
                if split == "train":
                    pixels = train_image(rng, xs[index], photos, cfg)
                else:
                    pixels, box = test_canvas(rng, xs[index], others, photos, cfg)
                    boxes[rel] = list(box)
                _save_png(tmp / "images" / rel, pixels)
                lines[split].append(rel)
    meta = tmp / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    for split, rels in lines.items():
        (meta / f"{split}.txt").write_text("".join(f"{r}\n" for r in rels), encoding="utf-8")
    (meta / "benchdata.json").write_text(
        json.dumps({"generator": "fcnx.benchdata", "source": "Fashion-MNIST", "config": asdict(cfg)}, indent=1) + "\n",
        encoding="utf-8",
    )
    _write_boxes(tmp / "boxes.json", boxes)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return {split: len(rels) for split, rels in lines.items()}


def plant_mislabels(
    root: str | Path, out: str | Path, share: float, seed: int = 0, split: str = "test"
) -> dict[str, dict[str, str]]:
    """Copy the dataset ``root`` to ``out`` with a ``share`` of the images of ``split`` (``test`` or ``train``)
    moved to a wrong class.

    The planted images keep their id; ``meta/<split>.txt`` and ``boxes.json`` follow the move, and
    ``meta/mislabels.json`` records ``{"<planted class>/<id>.png": {"true": ..., "planted": ...}}`` (and
    the split). Returns that record. ``root`` is never modified.
    """
    root, out = Path(root), Path(out)
    if not 0.0 <= share <= 1.0:
        raise UsageError(f"share must be in [0, 1], got {share}")
    if split not in ("train", "test"):
        raise UsageError(f"mislabels are planted in the train or the test split, not {split!r}")
    check_folder_path(out)
    if out.exists():
        raise UsageError("output exists; choose a new folder", out)
    try:
        classes = (root / "meta" / "classes.txt").read_text(encoding="utf-8").split()
        tests = (root / "meta" / f"{split}.txt").read_text(encoding="utf-8").split()
        boxes = json.loads((root / "boxes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"not a benchmark dataset ({type(exc).__name__}: {exc})", root) from None
    rng = np.random.default_rng(seed)
    count = round(share * len(tests))
    chosen = sorted(rng.choice(len(tests), size=count, replace=False).tolist())
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(root, tmp)
    planted: dict[str, dict[str, str]] = {}
    for i in chosen:
        true, name = tests[i].split("/")
        wrong = [c for c in classes if c != true][rng.integers(len(classes) - 1)]
        new = f"{wrong}/{name}"
        (tmp / "images" / wrong).mkdir(parents=True, exist_ok=True)
        (tmp / "images" / tests[i]).rename(tmp / "images" / new)
        boxes = {(new if rel == tests[i] else rel): box for rel, box in boxes.items()}  # in place: same order
        planted[new] = {"true": true, "planted": wrong}
        tests[i] = new
    (tmp / "meta" / f"{split}.txt").write_text("".join(f"{t}\n" for t in tests), encoding="utf-8")
    _write_boxes(tmp / "boxes.json", boxes)
    (tmp / "meta" / "mislabels.json").write_text(
        json.dumps({"share": share, "seed": seed, "split": split, "planted": planted}, indent=1) + "\n",
        encoding="utf-8",
    )
    tmp.rename(out)
    return planted
