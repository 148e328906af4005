"""The report of ``fcnx bench localization``: ``results.md``, ``results.json`` and ``results.png``."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from fcnx.bench.localization import Results

BAR = (31, 119, 180)
BASELINE = (160, 160, 160)
SIDES = (
    ("original_top1", "canvas", (160, 160, 160)),
    ("cropped_top1", "crop for the label", (31, 119, 180)),
    ("unlabelled_top1", "crop, no label", (255, 127, 14)),
    ("truth_top1", "true box", (44, 160, 44)),
)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown(results: Results, command: str) -> str:
    """The report as Markdown."""
    s = results.settings
    lines = [
        "# Results on ground truth: localization, cropping, mislabels",
        "",
        f"Made by `{command}` on {s['images']} test canvases of `{s['root']}`; ensemble "
        f"{', '.join(s['nets'])} at kernel {s['kernel']}, pyramid step {s['step']} up to {s['max_scale']}x. "
        "Every box is what `fcnx crop` gives for the canvas's own label with those nets and that rule.",
        "",
        "## Localization (each canvas's one object)",
        "",
        "| method | mean IoU | IoU>=0.3 | IoU>=0.5 | IoU>=0.7 | MaxBoxAccV2 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in sorted(results.localization.items(), key=lambda kv: -kv[1]["maxboxacc"]):
        lines.append(
            f"| {name} | {v['mean_iou']:.3f} | {_pct(v['acc@0.3'])} | {_pct(v['acc@0.5'])} | "
            f"{_pct(v['acc@0.7'])} | **{_pct(v['maxboxacc'])}** |"
        )
    lines += [
        "",
        "MaxBoxAccV2: the mean of the shares at IoU 0.3, 0.5 and 0.7 (Choe et al., 2020), in %. "
        "'paper': per level the cell of the largest summed probability; 'votes-first': the authors' code.",
        "",
        "## Number of nets (paper rule, every subset of that size)",
        "",
        "| nets | subsets | mean MaxBoxAccV2 | worst | best |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k, v in sorted(results.by_net_count.items()):
        lines.append(f"| {k} | {v['subsets']} | {_pct(v['mean'])} | {_pct(v['min'])} | {_pct(v['max'])} |")
    lines += [
        "",
        "## Classification: the paper's Table IV in miniature (top-1 %)",
        "",
        "| classifier | canvas | crop for the label | change | crop for the top class (no label) | true box |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results.classification:
        held = " (held out)" if row["model"] not in s["nets"] and row["model"] != "ensemble" else ""
        lines.append(
            f"| {row['model']}{held} | {_pct(row['original_top1'])} | {_pct(row['cropped_top1'])} | "
            f"{100 * row['delta_top1']:+.1f} | {_pct(row['unlabelled_top1'])} | {_pct(row['truth_top1'])} |"
        )
    lines += [
        "",
        "Originals and crops are squashed to the kernel with the same interpolation; 'ensemble' "
        "averages the classifiers' probabilities. 'Crop for the label' is the paper's Table IV: the ensemble "
        "looks for the image's own label, so the crop already uses it; 'crop for the top class' is what "
        "`fcnx crop` gives without a label (a fair test of a classifier); 'true box' squashes the tight box "
        "of the item's ink, whose aspect the classifiers never saw in training (their items fill a square frame).",
    ]
    if results.mislabels:
        m = results.mislabels
        lines += [
            "",
            "## Mislabel detection (`fcnx suspects`)",
            "",
            f"{m['planted']} of the test images ({100 * m['share']:.0f}%) were moved to a wrong class. "
            f"`fcnx suspects` (the paper's signal: no net votes for the label anywhere) flagged "
            f"{m['suspects']}, {m['found']} of them planted: precision **{_pct(m['precision'])}%**, recall "
            f"**{_pct(m['recall'])}%**. The graded signal (`--signal graded --top {m['planted']}`: the images "
            f"whose label's best summed probability falls furthest below the best class's) flags "
            f"{len(m['graded_ids'])}, {m['graded_found']} of them planted: precision "
            f"**{_pct(m['graded_precision'])}%**, recall **{_pct(m['graded_found'] / m['planted'])}%**.",
        ]
    lines += ["", "## Targets", ""]
    lines += [f"- [{'x' if ok else ' '}] {text}" for text, ok in results.targets()]
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())
    lines += ["", f"Time: {seconds}.", ""]
    return "\n".join(lines)


def _bars(
    title: str,
    rows: list[tuple[str, list[tuple[float, tuple[int, int, int]]]]],
    legend: list[tuple[str, tuple[int, int, int]]],
    font: ImageFont.ImageFont,
    width: int,
    label_w: int,
) -> Image.Image:
    """Horizontal bars in [0, 1]: one row per label, one bar per value of the row."""
    row_h, bar_h, top = 8 + 14 * max(len(v) for _, v in rows), 12, 52
    image = Image.new("RGB", (width, top + row_h * len(rows) + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((width / 2, 6), title, fill="black", font=font, anchor="mt")
    x = 10
    for name, colour in legend:
        draw.rectangle([x, 28, x + 14, 40], fill=colour)
        draw.text((x + 20, 34), name, fill="black", font=font, anchor="lm")
        x += 40 + draw.textlength(name, font=font)
    span = width - label_w - 70
    for tick in range(0, 101, 20):
        tx = label_w + span * tick / 100
        draw.line([(tx, top - 4), (tx, top + row_h * len(rows))], fill=(230, 230, 230))
        draw.text((tx, top + row_h * len(rows) + 4), f"{tick}%", fill="black", font=font, anchor="mt")
    for r, (label, values) in enumerate(rows):
        y = top + r * row_h + 4
        draw.text((label_w - 8, y + row_h / 2 - 4), label, fill="black", font=font, anchor="rm")
        for k, (value, colour) in enumerate(values):
            by = y + k * 14
            draw.rectangle([label_w, by, label_w + span * value, by + bar_h], fill=colour)
            draw.text((label_w + span * value + 4, by + bar_h / 2), _pct(value), fill="black", font=font, anchor="lm")
    return image


def plot(results: Results, path: Path) -> Path:
    """MaxBoxAccV2 per method (left) beside top-1 per classifier on canvases, crops and true boxes (right)."""
    from fcnx.io.files import atomic_write

    font = ImageFont.load_default(size=13)
    loc = sorted(results.localization.items(), key=lambda kv: -kv[1]["maxboxacc"])
    left = _bars(
        "Localization: MaxBoxAccV2",
        [(name, [(v["maxboxacc"], BASELINE if name.startswith(("centred", "random")) else BAR)]) for name, v in loc],
        [("fcnx", BAR), ("baseline", BASELINE)],
        font,
        width=820,
        label_w=330,
    )
    right = _bars(
        "Classification: top-1",
        [(row["model"], [(row[key], colour) for key, _, colour in SIDES]) for row in results.classification],
        [(name, colour) for _, name, colour in SIDES],
        font,
        width=620,
        label_w=130,
    )
    figure = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    figure.paste(left, (0, 0))
    figure.paste(right, (left.width, 0))
    atomic_write(path, lambda f: figure.save(f, format="PNG"))
    return path


def write(results: Results, folder: Path, command: str) -> list[Path]:
    """Write ``results.md``, ``results.json`` and ``results.png`` into ``folder``."""
    from fcnx.io.files import atomic_text

    md, js = folder / "results.md", folder / "results.json"
    atomic_text(md, markdown(results, command))
    atomic_text(js, json.dumps(results.as_dict(), indent=1) + "\n")
    return [md, js, plot(results, folder / "results.png")]
