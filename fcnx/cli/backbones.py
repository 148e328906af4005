"""``fcnx list-backbones`` and ``fcnx info``."""

from __future__ import annotations

import json

import click

from fcnx.backbones import plugins, registry
from fcnx.backbones.checkpoint import MAX_INPUT_SIZE
from fcnx.backbones.spec import BackboneSpec
from fcnx.cli.text import text_table
from fcnx.errors import UsageError
from fcnx.method.geometry import DEFAULT_KERNEL


def _d_at(spec: BackboneSpec, size: int) -> int | None:
    try:
        return spec.pool_size(size)
    except ValueError:
        return None


def spec_record(spec: BackboneSpec) -> dict:
    """A backbone's spec as JSON-ready data."""
    missing = spec.missing_requirements()
    pre = spec.preprocess
    return {
        "name": spec.name,
        "framework": spec.framework,
        "plugin": spec.plugin,
        "formula": spec.formula(),
        "stride": spec.stride,
        "offset": spec.offset,
        "padding": spec.padding,
        "default_size": spec.default_size,
        "d_at_default": _d_at(spec, spec.default_size),
        "d_at_299": _d_at(spec, DEFAULT_KERNEL),
        "preprocess": {
            "mean": list(pre.mean),
            "std": list(pre.std),
            "channel_order": pre.channel_order,
        },
        "pretrained": list(spec.pretrained),
        "available": not missing,
        "missing": missing,
        "install_hint": spec.install_hint if missing else "",
        "description": spec.description,
    }


@click.command("list-backbones")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--all-timm",
    "timm_pattern",
    metavar="PATTERN",
    help="Instead, list timm's models matching PATTERN (as timm.list_models, e.g. 'convnext*'): each is a "
    "backbone timm/<name>, measured on first use; the table shows what is measured so far.",
)
def list_backbones_cmd(pattern: str, as_json: bool, timm_pattern: str | None) -> None:
    """List the registered backbones whose name matches PATTERN (a glob, or a comma list of globs).

    \b
    Examples:
      fcnx list-backbones
      fcnx list-backbones 'incep*'
      fcnx list-backbones --json
      fcnx list-backbones --all-timm 'convnext*'
    """
    if timm_pattern is not None:
        _list_timm(timm_pattern, as_json)
        return
    specs = registry.list_backbones(pattern)
    if as_json:
        click.echo(
            json.dumps({"backbones": [spec_record(s) for s in specs], "broken_plugins": plugins.broken}, indent=2)
        )
        return
    rows = [["NAME", "FRAMEWORK", "PLUGIN", "FORMULA", "D@299", "SIZE", "STATUS"]]
    for spec in specs:
        rec = spec_record(spec)
        status = "ok" if rec["available"] else f"unavailable ({rec['install_hint']})"
        rows.append(
            [
                spec.name,
                spec.framework,
                spec.plugin,
                rec["formula"],
                str(rec["d_at_299"] or "-"),
                str(spec.default_size),
                status,
            ]
        )
    click.echo(text_table(rows) if specs else f"no backbone matches {pattern!r}")
    for name, reason in sorted(plugins.broken.items()):
        click.echo(f"warning: plugin {name!r} skipped: {reason}", err=True)


def _list_timm(pattern: str, as_json: bool) -> None:
    plugins.load_plugins()
    records = plugins.pm.hook.list_candidates(family="timm", pattern=pattern)
    if records is None:
        raise UsageError("--all-timm needs the timm plugin and timm: pip install torch timm")
    if as_json:
        click.echo(json.dumps({"timm_models": records}, indent=2))
        return
    rows = [["NAME", "FORMULA", "SIZE", "PRETRAINED", "STATUS"]]
    for rec in records:
        tags = rec["pretrained"]
        rows.append(
            [
                rec["name"],
                rec["formula"] or "-",
                str(rec["default_size"] or "-"),
                f"{tags[0]} (+{len(tags) - 1})" if len(tags) > 1 else (tags[0] if tags else "-"),
                rec["status"],
            ]
        )
    click.echo(text_table(rows) if records else f"no timm model matches {pattern!r}")


@click.command("info")
@click.argument("name")
@click.option("--d-range", default="1:16", show_default=True, help="Range of pooled sizes D to tabulate, FIRST:LAST.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_cmd(name: str, d_range: str, as_json: bool) -> None:
    """Show backbone NAME's spec and, for each pooled size D, the input sizes W that give it.

    \b
    Examples:
      fcnx info inception_v3
      fcnx info xception --d-range 8:12 --json
      fcnx info timm/convnext_tiny
    """
    spec = registry.get_backbone(name)
    try:
        first, last = (int(v) for v in d_range.split(":"))
    except ValueError:
        raise UsageError(f"--d-range must be FIRST:LAST, got {d_range!r}") from None
    if not 1 <= first <= last <= MAX_INPUT_SIZE:  # a pooled side is at most the input's, and inputs at most 4096
        raise UsageError(f"--d-range must be FIRST:LAST with 1 <= FIRST <= LAST <= {MAX_INPUT_SIZE}, got {d_range!r}")
    table = [
        {"D": d, "W_min": spec.w_min(d), "W_max": spec.w_min(d) + spec.stride - 1}
        for d in range(first, last + 1)
        if spec.w_min(d) > 0
    ]
    rec = spec_record(spec) | {"w_to_d": table}
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    pre = rec["preprocess"]
    lines = [
        f"{spec.name}: {spec.description}",
        f"  framework      {spec.framework} (plugin {spec.plugin})",
        f"  formula        W_min(D) = {rec['formula']}  (stride {spec.stride}, {spec.padding} padding)",
        f"  default size   {spec.default_size} (D={rec['d_at_default']}); at 299: D={rec['d_at_299']}",
        f"  preprocess     (x/255 - mean)/std, mean={pre['mean']}, std={pre['std']}, {pre['channel_order']}",
        f"  pretrained     {', '.join(spec.pretrained) or '-'}",
        f"  status         {'ok' if rec['available'] else 'unavailable: ' + rec['install_hint']}",
        "",
        text_table([["D", "W range"]] + [[str(r["D"]), f"{r['W_min']}..{r['W_max']}"] for r in table]),
    ]
    click.echo("\n".join(lines))
