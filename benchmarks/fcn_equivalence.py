"""Print, per PyTorch backbone, how exactly its FCN reproduces the classifier.

(1) max |FCN - classifier| on kernel x kernel inputs (float32, eval mode), with a one-layer head
and with the paper's dense head; (2) on a larger input, how far each FCN cell is from the
classifier run on that cell's window (zero only for nets whose convolutions never pad: padding
inside the network sees the window's border in one case and real neighbours in the other).

    python benchmarks/fcn_equivalence.py [--kernel 299] [--nets vgg16,xception]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fcnx.backbones.registry import list_backbones
from fcnx.engine.fcn import load_fcn
from fcnx.testing import random_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", type=int, default=299)
    parser.add_argument("--nets", default="*")
    args = parser.parse_args()
    classes = [f"c{i}" for i in range(10)]
    gen = torch.Generator().manual_seed(0)
    print(
        f"{'backbone':22} {'head':10} {'max|diff| @kernel':>18} {'max|logit|':>10} {'sliding: max|diff|':>19} {'corr':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for spec in list_backbones(args.nets):
            if spec.framework != "pytorch" or spec.missing_requirements():
                continue
            for head in ((), (1024, 512)):
                path = random_checkpoint(Path(tmp) / f"{spec.name}.safetensors", spec.name, classes, args.kernel, head)
                fcn = load_fcn(spec.name, path, kernel=args.kernel)
                k, s = args.kernel, spec.stride
                x = torch.rand(2, 3, k, k, generator=gen) * 255
                big = torch.rand(1, 3, k + s, k + 2 * s, generator=gen) * 255
                with torch.inference_mode():
                    diff = (fcn(x)[:, :, 0, 0] - fcn.classifier(fcn.normalize(x))).abs().max().item()
                    scale = fcn(x).abs().max().item()
                    heat = fcn(big)[0]
                    slid = torch.stack(
                        [
                            torch.stack(
                                [
                                    fcn.classifier(fcn.normalize(big[:, :, i * s : i * s + k, j * s : j * s + k]))[0]
                                    for j in range(heat.shape[2])
                                ],
                                -1,
                            )
                            for i in range(heat.shape[1])
                        ],
                        -2,
                    )
                sd = (heat - slid).abs().max().item()
                corr = torch.corrcoef(torch.stack([heat.flatten(), slid.flatten()]))[0, 1].item()
                print(
                    f"{spec.name:22} {'x'.join(map(str, head)) or 'dense':10} {diff:18.2e} {scale:10.2f} {sd:19.3f} {corr:6.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
