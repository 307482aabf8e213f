"""The `factory` command line."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from factory.errors import BadInput, FactoryError

app = typer.Typer(
    help="Asset factory for generated video: orders in, signed H.264 deliverables out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Object store: a directory, or s3://bucket/prefix (standard AWS settings apply: "
        "AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION). Default: FACTORY_STORE, else "
        "~/.cache/asset-factory/store.",
        show_default=False,
    ),
]
RegistryOption = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Extra model registry (TOML) merged over the built-in one. Default: FACTORY_REGISTRY.",
        show_default=False,
    ),
]


def _quiet_libraries(verbose: bool) -> None:
    # Prefect reads these at import, so they must be set before flows are imported.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh Prefect database on a loaded 2-core machine can take longer than the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        # Our own bars replace the per-component loading bars of diffusers and transformers.
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()


@app.command()
def run(
    order_file: Annotated[
        Path, typer.Argument(metavar="ORDER", help="Order file (.yaml, .yml or .json)")
    ],
    store: StoreOption = None,
    registry: RegistryOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--out", help="Where to copy the deliverable. Default: ./out/ORDER_ID.mp4"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the delivery as JSON on stdout")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs")] = False,
) -> None:
    """Produce an order end to end through the Prefect flow and print the deliverable."""
    from factory.orders import load_order

    order = load_order(order_file)
    if registry is not None:
        os.environ["FACTORY_REGISTRY"] = str(registry)
    from factory.settings import Settings
    from tasks.prepare import check_order

    _quiet_libraries(verbose)
    check_order(order, Settings(), store)
    from factory.runner import run_with_progress

    delivery = run_with_progress(order, store, console, show=not as_json)
    from storage.assets import get_asset
    from storage.open import open_store

    target = output or Path("out") / f"{order.id}.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.partial")
    temp.write_bytes(get_asset(open_store(delivery.store), delivery.deliverable))
    temp.replace(target)
    if as_json:
        out.print_json(data={**delivery.model_dump(mode="json"), "path": str(target)})
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("deliverable", str(target))
    table.add_row("duration", f"{delivery.duration_s:.2f} s")
    table.add_row("digest", f"sha256:{delivery.deliverable.digest}")
    table.add_row("stored at", delivery.deliverable.uri)
    table.add_row("device-seconds", f"{delivery.device_seconds:.2f} ({_devices(delivery)})")
    out.print(table)


def _devices(delivery) -> str:
    return ", ".join(sorted({run.device_class for run in delivery.runs}))


@app.command()
def models(registry: RegistryOption = None) -> None:
    """List the model registry: where each model's weights are, provenance and royalties."""
    from factory.registry import load_registry
    from factory.settings import Settings

    settings = Settings()
    reg = load_registry(registry or settings.registry)
    table = Table(title=f"Models ({', '.join(str(s) for s in reg.sources)})")
    for column in (
        "name",
        "pipeline",
        "weights",
        "steps",
        "render size",
        "trained on",
        "royalties",
    ):
        table.add_column(column)
    for name, entry in sorted(reg.models.items()):
        if entry.builtin:
            where = f"built-in {entry.builtin} (built locally on first use)"
        elif entry.path:
            where = str(entry.path)
        else:
            where = f"HF cache: {entry.hub_id}"
        table.add_row(
            name,
            entry.pipeline_class,
            where,
            str(entry.default_steps),
            f"{entry.render_width}×{entry.render_height}",
            "\n".join(source.source for source in entry.training_provenance),
            "\n".join(f"{share.holder} {share.share:.0%}" for share in entry.royalty_routing),
        )
    out.print(table)


def main() -> None:
    try:
        app()
    except BadInput as error:
        console.print(Text.assemble(("error: ", "bold red"), str(error)))
        sys.exit(error.exit_code)
    except FactoryError as error:
        console.print(Text.assemble(("failed: ", "bold red"), str(error)))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
