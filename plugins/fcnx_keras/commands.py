"""``fcnx convert``, the Keras plugin's command: a Keras Inception-v3 / Xception / Inception-ResNet-v2
checkpoint as an fcnx PyTorch checkpoint (registered through the ``register_commands`` hook)."""

from __future__ import annotations

from pathlib import Path

import click

from fcnx.plugin import UsageError, kind_of, read_class_list


@click.command("convert", short_help="Convert a Keras checkpoint into an fcnx PyTorch checkpoint.")
@click.argument("keras_file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The fcnx checkpoint to write (.safetensors).",
)
@click.option(
    "--backbone",
    help="Keras backbone of the file: keras_inception_v3, keras_xception or "
    "keras_inception_resnet_v2 (default: the sidecar's arch).",
)
@click.option(
    "--classes",
    "classes_file",
    type=click.Path(path_type=Path),
    help="Class names, one per line (default: the <file>.json sidecar).",
)
@click.option("--head", default="", help="Hidden widths of the dense head of a weights-only file, e.g. 1024,512.")
@click.option(
    "--input-size",
    type=int,
    help="Training input size recorded in the checkpoint (default: the sidecar's, else the backbone's).",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Run both nets on one random image and print the largest heatmap difference.",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def convert_cmd(
    keras_file: Path,
    output: Path,
    backbone: str | None,
    classes_file: Path | None,
    head: str,
    input_size: int | None,
    check: bool,
    force: bool,
) -> None:
    """Convert KERAS_FILE (.keras, .h5 or .weights.h5) into an fcnx PyTorch checkpoint.

    timm's inception_v3, legacy_xception and inception_resnet_v2 have the layer structure of
    their Keras namesakes; the checkpoint makes fcnx run the Keras weights on PyTorch, with
    Keras' pooling, so both give the same heatmaps.

    \b
    Examples:
      fcnx convert xception_food101.h5 --classes meta/classes.txt -o xception_food101.safetensors
      fcnx convert iv3.weights.h5 --backbone keras_inception_v3 --head 1024,512 \\
                   --classes meta/classes.txt -o iv3.safetensors
    """
    from fcnx.plugin import get_backbone, read_meta, save_checkpoint, sidecar_path

    if output.suffix != ".safetensors":
        raise UsageError(f"{output}: the output must be a .safetensors file")
    if output.exists() and not force:
        raise UsageError(f"{output}: exists; pass --force to overwrite it")
    if not keras_file.is_file():
        mode = keras_file.stat().st_mode if keras_file.exists() else None
        what = "no such file" if mode is None else f"is {kind_of(mode)}, not a regular file: not opened"
        raise UsageError(f"{keras_file}: {what}")
    meta = read_meta(keras_file)
    name = backbone or (meta.arch if meta else None)
    if name is None:
        raise UsageError(f"{keras_file}: no sidecar {sidecar_path(keras_file).name}; give --backbone")
    from fcnx_keras.to_timm import TIMM_TWINS

    if name not in TIMM_TWINS:
        raise UsageError(f"fcnx convert handles {', '.join(TIMM_TWINS)}, not {name!r}")
    spec = get_backbone(name)
    if spec.missing_requirements():
        raise UsageError(f"{name} needs {', '.join(spec.missing_requirements())}: {spec.install_hint}")
    classes = read_class_list(classes_file) if classes_file else (meta.classes if meta else None)
    if classes is None:
        raise UsageError(f"{keras_file}: no class names; give --classes FILE or a sidecar")
    if meta is not None and len(meta.classes) != len(classes):
        raise UsageError(f"{keras_file}: the sidecar has {len(meta.classes)} classes, {classes_file} {len(classes)}")
    try:
        widths = tuple(int(w) for w in head.split(",") if w.strip()) or tuple(meta.head if meta else ())
    except ValueError:
        raise UsageError(f"--head must be comma-separated widths, got {head!r}") from None
    size = input_size or (meta.input_size if meta else spec.default_size)

    from fcnx_keras.to_timm import convert

    classifier = spec.build(len(classes), widths, None)
    spec.load_weights(classifier, keras_file)
    tensors, out_meta = convert(classifier, classes, size)
    save_checkpoint(output, tensors, out_meta)
    click.echo(
        f"wrote {output} ({out_meta.arch}, {len(classes)} classes, head {out_meta.head or 'none'}, input size {size})"
    )
    if check:
        click.echo(
            f"check: largest |Keras - PyTorch| heatmap difference {heatmap_difference(keras_file, output, name, size):.2e} "
            f"on a random {size + 64}x{size + 32} image"
        )


def heatmap_difference(keras_file: Path, torch_file: Path, keras_backbone: str, kernel: int) -> float:
    """Largest absolute difference between the two FCNs' heatmaps on one random image."""
    import torch

    from fcnx.plugin import load_fcn, read_meta

    meta = read_meta(torch_file)
    if meta is None:
        raise UsageError("not a checkpoint written by fcnx (no metadata)", torch_file)
    keras_fcn = load_fcn(keras_backbone, keras_file, classes=meta.classes, kernel=kernel, head=tuple(meta.head))
    torch_fcn = load_fcn(meta.arch, torch_file, kernel=kernel)
    pixels = torch.rand(1, 3, kernel + 64, kernel + 32, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        return (keras_fcn(pixels) - torch_fcn(pixels)).abs().max().item()
