"""Commands on the registered components: ``list`` and ``plugins``."""

from __future__ import annotations

import click

from synergic.cli.output import OutputMode, console, json_option

__all__ = ["list_command", "plugins", "KINDS"]

KINDS = {
    "backbones": "backbones", "datasets": "datasets", "samplers": "pair_samplers",
    "heads": "synergic_heads", "aggregators": "aggregators", "loggers": "loggers",
}


@click.command(name="list")
@click.argument("kind", required=False, type=click.Choice(sorted(KINDS)))
@json_option
def list_command(kind: str | None, output_mode: OutputMode) -> None:
    """List the registered components and where each comes from.

    --json prints {kind: [{"name", "origin", "description"}]}; `list backbones` also counts the
    architectures timm can build ("timm_models"), which imports timm (seconds).
    """
    from synergic import registry

    listing: dict = {}
    timm_models = None
    for name in [kind] if kind else sorted(KINDS):
        listing[name] = [
            {"name": e.name, "origin": e.origin, "description": e.description}
            for e in registry.ALL[KINDS[name]].entries()
        ]
    if kind == "backbones":
        import timm  # only when asked for: importing timm takes seconds

        timm_models = len(timm.list_models())
    if output_mode.json:
        document = dict(listing)
        if timm_models is not None:
            document["timm_models"] = timm_models
        output_mode.emit_json(document)
        return
    from rich.table import Table

    out = console()
    for name, entries in listing.items():
        table = Table(title=name, title_justify="left")
        for column in ("name", "origin", "description"):
            table.add_column(column)
        for entry in entries:
            table.add_row(entry["name"], entry["origin"], entry["description"])
        if name == "backbones":
            count = ("any of timm's architectures (synergic list backbones counts them)"
                     if timm_models is None else f"{timm_models} architectures")
            table.add_row("<any timm model>", "timm", f"{count}, e.g. resnet50, efficientnet_b0, "
                          "convnext_tiny (timm.list_models())")
        out.print(table)


@click.command()
@json_option
def plugins(output_mode: OutputMode) -> None:
    """Installed plugins, their versions and what each registered.

    --json prints [{"plugin", "version", "registered": {registry: [names]}}].
    """
    from synergic.plugins import loaded_plugins

    found = loaded_plugins()
    if output_mode.json:
        output_mode.emit_json([
            {"plugin": info.name, "version": info.version, "registered": info.registered}
            for info in found
        ])
        return
    from rich.table import Table

    table = Table()
    for column in ("plugin", "version", "registered"):
        table.add_column(column)
    for info in found:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registered.items())
        table.add_row(info.name, info.version or "", registered)
    console().print(table)
