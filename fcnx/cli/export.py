"""``fcnx export``: boxes of ``fcnx crop`` or ``fcnx suspects`` as COCO, Pascal VOC, YOLO or FiftyOne files."""

from __future__ import annotations

from pathlib import Path

import click

from fcnx.cli.boxes import RuleChoice
from fcnx.cli.common import PathType, stoppable


@click.command("export")
@click.argument("outdir", type=PathType(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["coco", "voc", "yolo", "fiftyone", "labelstudio"]),
    help="coco: labels.json; voc: Annotations/*.xml; yolo: labels/*.txt, classes.txt; fiftyone: labels.json "
    "and data/ (links to the images) for fo.types.COCODetectionDataset; labelstudio: tasks.json (boxes as "
    "predictions, in percent) and labeling-config.xml.",
)
@click.option(
    "-o",
    "--output",
    "dest",
    required=True,
    type=PathType(path_type=Path, file_okay=False),
    help="Destination folder: new, empty, or an earlier export (its files are replaced).",
)
@click.option(
    "--box",
    default=None,
    type=RuleChoice(),
    help="square: the kernel window (the paper's crop); tight: the tight box where boxes.jsonl has one, "
    "else the window; another kind: that box where it has one, else the kind before it in this list "
    "[default: each box as it was cropped].",
)
@click.option(
    "--classes",
    "classes_file",
    type=PathType(path_type=Path, exists=True, dir_okay=False),
    help="Class list (one per line, e.g. meta/classes.txt) fixing the category ids [default: the categories "
    "found, in the nets' order].",
)
@click.option(
    "--image-root",
    default=None,
    help="labelstudio: path or URL prefix the images' relative paths are joined to in data.image "
    "(e.g. /data/local-files/?d=food-101) [default: each image's file path].",
)
@stoppable("export", "run the same command again")
def export_cmd(
    outdir: Path, fmt: str, dest: Path, box: str | None, classes_file: Path | None, image_root: str | None
) -> None:
    """Write the boxes of OUTDIR (a folder of `fcnx crop`, or of `fcnx suspects`) in a format that
    annotation and dataset tools read: COCO detection JSON, Pascal VOC XML, YOLO text, a COCO
    layout that FiftyOne imports, or Label Studio tasks with the boxes as pre-annotations. Boxes are in original-image pixels; suspects are marked
    (suspect: true, with the dataset's label).

    \b
    Examples:
      fcnx export cropped/ --format coco -o cropped-coco/
      fcnx export cropped/ --format fiftyone -o review/   # fo.Dataset.from_dir("review", dataset_type=fo.types.COCODetectionDataset)
      fcnx export suspects/ --format voc -o suspects-voc/
      fcnx export cropped/ --format labelstudio --image-root "/data/local-files/?d=food-101" -o ls/
    """
    from fcnx.errors import one_line
    from fcnx.io.files import read_class_list
    from fcnx.jobs import export

    classes = None if classes_file is None else read_class_list(classes_file)
    if image_root is not None and fmt != "labelstudio":
        raise click.UsageError("--image-root is for --format labelstudio")
    result = export.export(
        outdir, dest, fmt, box, classes, report=lambda line: click.echo(one_line(line), err=True), image_root=image_root
    )
    boxes = sum(len(image.detections) for image in result.images)
    click.echo(
        one_line(
            f"export: {len(result.images)} image(s), {boxes} box(es), {len(result.categories)} categories as {fmt} "
            f"in {dest}"
        )
    )
    if result.errors:
        click.echo(f"export: {len(result.errors)} unreadable image(s) left out", err=True)
        raise SystemExit(1)
