"""The paper's Table IV per box kind on real photos: how sure the ensemble is of the true category on each crop.

Reads the boxes of a ``benchmarks/real_photos.py -o`` result (with the category) and crops each photo to each
box kind (every rule of ``fcnx crop --box``, the Grad-CAM box, the centred box, the whole image); each crop is
squashed to the kernel (as ``fcnx crop`` saves training crops) and classified by the default ensemble
(EfficientNet-Lite0/1/2, offline ImageNet weights). Per box kind: the nets' mean probability of the true
category (the sum over the classes that count), and the share of photos whose ensemble top-1 (the nets' mean)
is a class that counts. A crop that cuts the object, or drowns it in background, is worse training data; this
says which box kind keeps what the classifiers need.

    OMP_NUM_THREADS=1 python benchmarks/crop_confidence.py build/real_photos_eval.json --photos /work/photoset/eval.json

Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from real_photos import NETS, photoset

from fcnx.bench import report
from fcnx.engine.ensemble import load_ensemble
from fcnx.engine.fcn import imagenet_classes


def confidences(result: dict[str, Any], photos: list[Path]) -> dict[str, Any]:
    """Per photo and box kind of ``result``: the mean probability of the true category and whether top-1 counts."""
    ensemble = load_ensemble(NETS, kernel=224, device="cpu")
    classes = list(imagenet_classes())
    samples = {s.name: s for path in photos for s in photoset(path)}
    rows = []
    for row in result["rows"]:
        sample = samples.get(row["name"])
        if sample is None:
            continue
        accept = [classes.index(c) for c in sample.accept]
        out: dict[str, Any] = {"name": row["name"], "band": row["band"], "probability": {}, "top1": {}}
        for kind, (x, y, w, h) in row["boxes"]["with"].items():
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(sample.pixels.shape[1], int(np.ceil(x + w))), min(sample.pixels.shape[0], int(np.ceil(y + h)))
            crop = np.array(sample.pixels[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)])
            tensor = torch.from_numpy(crop).permute(2, 0, 1)[None]
            probs = ensemble.probabilities_at(tensor, (ensemble.kernel, ensemble.kernel))[0, :, :, 0, 0].float()
            mean = probs.mean(dim=0).numpy()
            out["probability"][kind] = float(mean[accept].sum())
            out["top1"][kind] = int(np.argmax(mean)) in accept
        rows.append(out)
    return {"nets": NETS, "rows": rows, "summary": summary(rows)}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per subset (all photos, each size band) and box kind: mean probability of the true category, top-1 share."""
    subsets = {"all": rows} | {b: [r for r in rows if r["band"] == b] for b in dict.fromkeys(r["band"] for r in rows)}
    return {
        name: {
            "images": len(chosen),
            "kinds": {
                kind: {
                    "probability": float(np.mean([r["probability"][kind] for r in chosen])),
                    "top1": float(np.mean([r["top1"][kind] for r in chosen])),
                }
                for kind in chosen[0]["probability"]
            },
        }
        for name, chosen in subsets.items()
        if chosen
    }


def markdown(result: dict[str, Any]) -> str:
    """One table: box kinds down, subsets across, each cell mean probability / top-1 share."""
    table = result["summary"]
    subsets = list(table)
    lines = [
        "| crop | " + " | ".join(f"{s} ({table[s]['images']})" for s in subsets) + " |",
        "|---" + "|---:" * len(subsets) + "|",
    ]
    for kind in table["all"]["kinds"]:
        cells = [
            f"{table[s]['kinds'][kind]['probability']:.3f} / {100 * table[s]['kinds'][kind]['top1']:.0f}%"
            for s in subsets
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="a benchmarks/real_photos.py -o JSON")
    parser.add_argument("--photos", type=Path, action="append", required=True, help="the photo-set JSON it ran on")
    parser.add_argument("-o", "--out", type=Path, default=None, help="write the full result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = confidences(json.loads(args.result.read_text(encoding="utf-8")), args.photos)
    print(markdown(result))
    report.save_json(result, args.out)


if __name__ == "__main__":
    main()
