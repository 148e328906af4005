"""The report of ``fcnx bench localization``: ``results.md``, ``results.json`` and ``results.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fcnx.bench.localization import Results, box_key
from fcnx.method import boxes

BAR = "#1f77b4"
BASELINE = "#a0a0a0"
SIDES = (
    ("original_top1", "canvas", "#a0a0a0"),
    ("cropped_top1", "crop for the label", "#1f77b4"),
    ("unlabelled_top1", "crop, no label", "#ff7f0e"),
    ("truth_top1", "true box", "#2ca02c"),
)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _maps_section(results: Results) -> list[str]:
    """The full ensemble's box of every rule of :data:`fcnx.method.boxes.RULES` (the best in bold) beside its score
    maps (standard MaxBoxAccV2), and the label-free category."""
    if not results.maps:
        return []
    loc, ens = results.localization, results.ensemble
    kinds = list(boxes.RULES)
    lines = [
        "",
        "## Boxes of every rule, and score maps (full ensemble)",
        "",
        f"| rule | {' | '.join(f'{k} box' for k in kinds)} | object map (`--heatmaps-npy`) | "
        "best map threshold at IoU 0.3/0.5/0.7 |",
        f"|---|{'---:|' * len(kinds)}---:|---|",
    ]
    for rule in ("paper", "votes-first"):
        found = {k: loc[key]["maxboxacc"] for k in kinds if (key := box_key(ens, rule, k)) in loc}
        best = max(found.values())
        cells = ["-" if k not in found else f"**{_pct(best)}**" if found[k] == best else _pct(found[k]) for k in kinds]
        heat = results.maps[f"object map ({rule})"]
        where = "/".join(f"{heat[f'threshold@{t}']:.2f}" for t in (0.3, 0.5, 0.7))
        lines.append(f"| {rule} | {' | '.join(cells)} | {_pct(heat['maxboxacc'])} | {where} |")
    pyramid = results.maps["pyramid evidence"]
    lines += [
        "",
        "MaxBoxAccV2 in %. Boxes: the one box `fcnx crop --box <rule>` outputs per image ('-': left out, "
        "its optional dependency missing, e.g. OpenCV for `fitted`). Maps: the standard protocol "
        "(wsolevaluation: threshold sweep in steps of 0.01, every region's box, the best threshold per IoU "
        "threshold) on the map `fcnx crop --heatmaps-npy` writes: the class maps' evidence where they give the "
        "tight box, else the windows' evidence inside the tight box (0 outside). For comparison, the windows' evidence "
        f"of the whole pyramid (no choice) scores {_pct(pyramid['maxboxacc'])}.",
    ]
    for rule, share in results.label_free.items():
        lines += ["", f"Label-free category ({rule}): the canvas's label on **{_pct(share)}%** of the canvases."]
    return lines


def _model(results: Results, row: dict[str, Any]) -> str:
    """A classification row's classifier, marked where it is held out of the ensemble."""
    held = row["model"] not in results.settings["nets"] and row["model"] != "ensemble"
    return f"{row['model']}{' (held out)' if held else ''}"


def _boxes_section(results: Results) -> list[str]:
    """The paper's Table IV per box kind: each classifier's top-1 on the canvas, on each box rule's crop and on
    the true box, with the label and without."""
    rows = [row for row in results.classification if "boxes" in row]
    if not rows:
        return []
    kinds = list(rows[0]["boxes"])
    lines = ["", "## Table IV per box kind (top-1 %)"]
    for side, title in (("label", "crop for the label"), ("top_class", "crop for the top class (no label)")):
        lines += [
            "",
            f"{title[0].upper()}{title[1:]}:",
            "",
            f"| classifier | canvas | {' | '.join(f'`{k}`' for k in kinds)} | true box |",
            f"|---|---:|{'---:|' * len(kinds)}---:|",
        ]
        for row in rows:
            cells = [_pct(row["boxes"][k][side]) for k in kinds]
            lines.append(
                f"| {_model(results, row)} | {_pct(row['original_top1'])} | {' | '.join(cells)} | "
                f"{_pct(row['truth_top1'])} |"
            )
    lines += [
        "",
        "One column per box rule of `fcnx crop --box` (`fcnx.method.boxes.RULES`), each the full ensemble's box "
        "under the paper rule, squashed to the kernel like the canvas and the true box.",
    ]
    lines += [f"`{kind}` left out: {why}." for kind, why in results.notes.items()]
    return lines


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
        "| method | mean IoU | IoU>=0.3 | IoU>=0.5 | IoU>=0.7 | MaxBoxAccV2 | keeps object (mean) | keeps >= 90 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in sorted(results.localization.items(), key=lambda kv: -kv[1]["maxboxacc"]):
        cover = [_pct(v[k]) if k in v else "-" for k in ("coverage", "keeps")]
        lines.append(
            f"| {name} | {v['mean_iou']:.3f} | {_pct(v['acc@0.3'])} | {_pct(v['acc@0.5'])} | "
            f"{_pct(v['acc@0.7'])} | **{_pct(v['maxboxacc'])}** | {cover[0]} | {cover[1]} |"
        )
    lines += [
        "",
        "MaxBoxAccV2: the mean of the shares at IoU 0.3, 0.5 and 0.7 (Choe et al., 2020), in %. "
        "'paper': per level the cell of the largest summed probability; 'votes-first': the authors' code. "
        "Keeps object: the share of the true box inside the box (mean, in %), and the share of canvases whose "
        "box keeps at least 90 % of it.",
        f"A box rule after the selection rule ({', '.join(repr(k) for k in boxes.RULES if k != 'square')}): the box "
        "`fcnx crop --box <rule>` gives (docs/crop.md); none: the paper's square window (`--box square`).",
        *_maps_section(results),
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
        lines.append(
            f"| {_model(results, row)} | {_pct(row['original_top1'])} | {_pct(row['cropped_top1'])} | "
            f"{100 * row['delta_top1']:+.1f} | {_pct(row['unlabelled_top1'])} | {_pct(row['truth_top1'])} |"
        )
    lines += [
        "",
        "Originals and crops are squashed to the kernel with the same interpolation; 'ensemble' "
        "averages the classifiers' probabilities. 'Crop for the label' is the paper's Table IV: the ensemble "
        "looks for the image's own label, so the crop already uses it; 'crop for the top class' is what "
        "`fcnx crop` gives without a label (a fair test of a classifier); 'true box' squashes the tight box "
        "of the item's ink, whose aspect the classifiers never saw in training (their items fill a square frame).",
        *_boxes_section(results),
    ]
    lines += _mislabels_section(results)
    lines += ["", "## Targets", ""]
    lines += [f"- [{'x' if ok else ' '}] {text}" for text, ok in results.targets()]
    if results.goals():
        lines += ["", "Aims of issue #14, reported but not checked by `--check`:", ""]
        lines += [f"- [{'x' if ok else ' '}] {text}" for text, ok in results.goals()]
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in results.seconds.items())
    lines += ["", f"Time: {seconds}.", ""]
    return "\n".join(lines)


def _mislabels_section(results: Results) -> list[str]:
    """The mislabel-detection section of the report (none when the run planted no mislabels)."""
    if not results.mislabels:
        return []
    m = results.mislabels
    return [
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


def _bars(axes: Any, title: str, labels: list[str], series: list[tuple[str, list[float], str]]) -> None:
    """Horizontal bars in [0, 1] on ``axes``: one row per label, one bar per series, each bar's value in %."""
    import numpy as np

    rows, height = np.arange(len(labels)), 0.8 / len(series)
    for k, (name, values, colour) in enumerate(series):
        bars = axes.barh(rows + k * height, values, height=height, color=colour, label=name or None)
        axes.bar_label(bars, labels=[_pct(v) for v in values], padding=3, fontsize=8)
    axes.set_yticks(rows + height * (len(series) - 1) / 2, labels)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.1)
    axes.xaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    axes.set_title(title)
    axes.grid(axis="x", color="0.9")
    axes.set_axisbelow(True)


def plot(results: Results, path: Path) -> Path:
    """MaxBoxAccV2 per method (left) beside top-1 per classifier on canvases, crops and true boxes (right)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from fcnx.io.files import atomic_write

    loc = sorted(results.localization.items(), key=lambda kv: -kv[1]["maxboxacc"])
    figure = Figure(figsize=(15, max(4.0, 0.3 * len(loc) + 1.5)), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1.4, 1])
    names = [name for name, _ in loc]
    baseline = [name.startswith(("centred", "random")) for name in names]
    values = [v["maxboxacc"] for _, v in loc]
    _bars(left, "Localization: MaxBoxAccV2", names, [("", values, BAR)])
    for patch, grey in zip(left.patches, baseline):
        patch.set_color(BASELINE if grey else BAR)
    left.legend(handles=[Patch(color=BAR, label="fcnx"), Patch(color=BASELINE, label="baseline")], loc="lower right")
    rows = results.classification
    series = [(name, [row[key] for row in rows], colour) for key, name, colour in SIDES]
    _bars(right, "Classification: top-1", [row["model"] for row in rows], series)
    right.legend(loc="lower right", fontsize=8)
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=80, metadata={"Software": None}))
    return path


def save_json(data: dict[str, Any], path: Path | None) -> None:
    """A benchmark script's ``-o``: ``data`` as indented JSON at ``path`` (its folder made); nothing without a path."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")


#: the files :func:`write` puts into its folder (never over a user's: :func:`~fcnx.io.files.claim_outputs`)
FILES = ("results.md", "results.json", "results.png")


def write(results: Results, folder: Path, command: str) -> list[Path]:
    """Write :data:`FILES` into ``folder``: the report, its figures as JSON, the plot."""
    from fcnx.io.files import atomic_text

    md, js, png = (folder / name for name in FILES)
    atomic_text(md, markdown(results, command))
    atomic_text(js, json.dumps(results.as_dict(), indent=1) + "\n")
    return [md, js, plot(results, png)]
