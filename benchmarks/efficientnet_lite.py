"""Print the measurements behind docs/efficientnet.md, on scikit-image's photos (fcnx.testing.photos).

(1) preprocessing: top-1 and confidence of each EfficientNet-Lite with (x-127)/128, timm's
(x/255-0.5)/0.5 and ImageNet mean/std, and how far the batch statistics of the photos after the
stem convolution are from the stem batch-norm's running statistics (mean KL divergence per
channel: small when the input convention is the one the net was trained with); (2) kernel: the
same per candidate input size, the reason for the ensemble's common kernel, with the mean KL over
all batch-norm layers; (3) per photo, at the common kernel: confidence in the object's classes on
the whole photo, on the annotated box and on the square around it.

Views: the whole photo (where the object is its subject), the annotated box, the square around
it, each also mirrored. Every view is resized (bicubic) to the input size and classified.

    python benchmarks/efficientnet_lite.py [--kernels 192,224,240,256,260,288,299,320] [--kernel 224]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from fcnx.engine.fcn import imagenet_classes, load_fcn
from fcnx.method.metrics import box_iou
from fcnx.testing.photos import PHOTOS, square_around

NETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: photos whose whole frame is a fair test of the object's class (the others are scenes)
SUBJECT_PHOTOS = ("coffee", "chelsea", "motorcycle", "camera")
CONVENTIONS = {  # name -> (mean, std) in pixels
    "(x-127)/128 [TF Lite]": ((127.0,) * 3, (128.0,) * 3),
    "(x-127.5)/127.5 [timm]": ((127.5,) * 3, (127.5,) * 3),
    "ImageNet mean/std": (tuple(255 * m for m in (0.485, 0.456, 0.406)), tuple(255 * s for s in (0.229, 0.224, 0.225))),
}


def views() -> list[tuple[str, tuple[str, ...], np.ndarray]]:
    """(label, accepted classes, RGB array) for every view of every annotated photo."""
    out = []
    for photo in PHOTOS.values():
        image = photo.load()
        height, width = image.shape[:2]
        x, y, w, h = square_around(photo.box, height, width)
        parts = [("box", photo.crop()), ("square", image[y : y + h, x : x + w])]
        if photo.name in SUBJECT_PHOTOS:
            parts.insert(0, ("whole", image))
        for kind, array in parts:
            for flip in (False, True):
                out.append(
                    (
                        f"{photo.name}/{kind}{'/flip' if flip else ''}",
                        photo.accept,
                        np.ascontiguousarray(array[:, ::-1] if flip else array),
                    )
                )
    return out


def pixels(array: np.ndarray, size: int) -> torch.Tensor:
    image = Image.fromarray(array).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()


def probabilities(fcn, array: np.ndarray, size: int, convention: tuple | None = None) -> torch.Tensor:
    x = normalized(fcn, pixels(array, size), convention)
    with torch.inference_mode():
        return fcn.classifier(x).softmax(1)[0]


def normalized(fcn, x: torch.Tensor, convention: tuple | None) -> torch.Tensor:
    if convention is None:
        return fcn.normalize(x)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in convention)
    return (x - mean) / std


def batchnorm_kl(fcn, samples, size: int, convention: tuple | None = None) -> list[float]:
    """Per batch-norm layer: mean over channels of KL(batch statistics of the photos || running statistics)."""
    x = normalized(fcn, torch.cat([pixels(array, size) for _, _, array in samples]), convention)
    kls: list[float] = []

    def hook(module, inputs, output):
        z = inputs[0].transpose(0, 1).flatten(1).double()
        mu, var = z.mean(1), z.var(1) + module.eps
        rm, rv = module.running_mean.double(), module.running_var.double() + module.eps
        kls.append((0.5 * (var / rv + (mu - rm) ** 2 / rv - 1 - torch.log(var / rv))).mean().item())

    norms = [m for m in fcn.classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    handles = [m.register_forward_hook(hook) for m in norms]
    try:
        with torch.inference_mode():
            fcn.classifier(x)
    finally:
        for handle in handles:
            handle.remove()
    return kls


def score(fcn, samples, size: int, convention: tuple | None = None) -> tuple[int, float]:
    """(top-1 hits, mean probability of the accepted classes) over ``samples``."""
    index = {c: i for i, c in enumerate(imagenet_classes())}
    hits, conf = 0, 0.0
    for _, accept, array in samples:
        p = probabilities(fcn, array, size, convention)
        ids = [index[c] for c in accept]
        hits += int(p.argmax().item() in ids)
        conf += p[ids].sum().item()
    return hits, conf / len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="192,224,240,256,260,288,299,320")
    parser.add_argument("--kernel", type=int, default=224, help="common kernel for the per-photo table")
    args = parser.parse_args()
    torch.manual_seed(0)
    fcns = {name: load_fcn(name, "pretrained") for name in NETS}
    samples = views()
    n = len(samples)
    print(
        f"\n(1) preprocessing, each net at its native size, {n} views: top-1 hits / mean P(object's classes) / "
        f"stem batch-norm KL"
    )
    print(f"{'convention':26}" + "".join(f"{name:>28}" for name in NETS))
    for label, convention in CONVENTIONS.items():
        cells = []
        for fcn in fcns.values():
            hits, conf = score(fcn, samples, fcn.spec.default_size, convention)
            kl = batchnorm_kl(fcn, samples, fcn.spec.default_size, convention)[0]
            cells.append(f"{hits}/{n}  {conf:.3f}  {kl:.3f}")
        print(f"{label:26}" + "".join(f"{c:>28}" for c in cells), flush=True)

    kernels = [int(k) for k in args.kernels.split(",")]
    print(
        f"\n(2) kernel size, {n} views: top-1 hits / mean P(object's classes); D = pooled size at that kernel; "
        f"mean of the nets, and their mean batch-norm KL over all layers"
    )
    print(f"{'kernel':>6} {'D':>3}" + "".join(f"{name:>22}" for name in NETS) + f"{'mean of nets':>18}{'BN KL':>8}")
    for k in kernels:
        cells = [score(fcn, samples, k) for fcn in fcns.values()]
        kl = sum(sum(v) / len(v) for v in (batchnorm_kl(fcn, samples, k) for fcn in fcns.values())) / len(fcns)
        d = fcns[NETS[0]].spec.pool_size(k)
        mean_hits = sum(h for h, _ in cells) / len(cells)
        mean_conf = sum(c for _, c in cells) / len(cells)
        print(
            f"{k:>6} {d:>3}"
            + "".join(f"{f'{h}/{n}  {c:.3f}':>22}" for h, c in cells)
            + f"{f'{mean_hits:.1f}  {mean_conf:.3f}':>18}{kl:8.3f}",
            flush=True,
        )

    index = {c: i for i, c in enumerate(imagenet_classes())}
    print(
        f"\n(3) per photo, each net at the kernel {args.kernel}: P(object's classes) [top-1 class] on whole photo -> "
        f"box -> square around the box (IoU of that square with the box); last line: mean of the nets"
    )
    for photo in PHOTOS.values():
        image = photo.load()
        sq = square_around(photo.box, *image.shape[:2])
        x, y, w, h = sq
        print(f"{photo.name} ({photo.category}; box {photo.box}, square {sq}, IoU {box_iou(sq, photo.box):.2f})")
        ids = [index[c] for c in photo.accept]
        means = [0.0, 0.0, 0.0]
        for name, fcn in fcns.items():
            cells = []
            for i, array in enumerate((image, photo.crop(), image[y : y + h, x : x + w])):
                p = probabilities(fcn, array, args.kernel)
                means[i] += p[ids].sum().item() / len(fcns)
                cells.append(f"{p[ids].sum().item():.3f} [{fcn.classes[p.argmax().item()]}]")
            print(f"  {name:20} " + "  ->  ".join(cells), flush=True)
        print(f"  {'mean':20} " + "  ->  ".join(f"{m:.3f}" for m in means))


if __name__ == "__main__":
    main()
