"""The `factory` command line."""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.common import (
    JsonOption,
    RegistryOption,
    StoreOption,
    TrustOption,
    lineage_from_index,
    open_store_option,
    trusted_keys,
)
from factory.errors import BadInput, FactoryError
from factory.settings import Settings

app = typer.Typer(
    help="Asset factory for generated video: orders in, signed H.264 deliverables out.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _flags_as_flags() -> None:
    """Show on/off options as bare flags (``--json``), not ``--json <bool>``, in help.

    typer 0.29's rich help prints a type for every option, flags included.
    """
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "flags_as_flags", False):
        # Patched already: the warm starter's children import this module a second time.
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if self.is_flag and self.is_bool_flag else shown(self, ctx)

    display_type_rich.flags_as_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_flags()


def _version(value: bool) -> None:
    if value:
        from factory import __version__

        out.print(f"factory {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Asset factory for generated video: orders in, signed H.264 deliverables out."""


console = Console(stderr=True)
out = Console()


def _quiet_libraries(verbose: bool) -> None:
    # Prefect reads these at import, so they must be set before flows are imported (the
    # warm starter imports with the same ones: cli.warm).
    from cli.warm import apply_quiet_defaults

    apply_quiet_defaults(verbose)


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
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Compute every stage; do not read the cache")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Recompute every stage and replace its cache entry")
    ] = False,
    no_ingest: Annotated[
        bool,
        typer.Option(
            "--no-ingest", help="Do not load this run into the floor warehouse at the end"
        ),
    ] = False,
    ephemeral: Annotated[
        bool,
        typer.Option(
            "--ephemeral",
            help="Use a throwaway Prefect API inside this run instead of the factory's local "
            "server (also FACTORY_LOCAL_SERVER=false)",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs")] = False,
) -> None:
    """Produce an order end to end through the Prefect flow and print the deliverable.

    Stage outputs identical to earlier ones (same recipe: model, parameters, inputs) are
    reused from the store's segment cache unless --no-cache or --refresh is given. The flow
    runs on PREFECT_API_URL when set, else on the factory's local Prefect server, started on
    first use and reused by later runs (`factory server --help`).
    """
    if no_cache and refresh:
        raise BadInput("--no-cache and --refresh exclude each other: pick one")
    from factory.orders import load_order

    order = load_order(order_file)
    _quiet_libraries(verbose)
    from media.devices import default_task_workers, device_class
    from tasks.prepare import check_order
    from tasks.resources import load_models, open_resources

    settings = Settings()
    models = load_models(settings, registry)
    from storage.inputs import InputSource

    check_order(
        order,
        models,
        settings.models_dir,
        InputSource(open_store_option(store, settings), settings.store_timeouts),
    )
    target = output or Path("out") / f"{order.id}.mp4"
    _check_output(target, order.id)
    resources = open_resources(settings, device_class(), store, models)
    if resources.identity_created:
        console.print(
            f"created the factory's signing keys in {settings.keys_dir} "
            "(public keys published to the store; see `factory keys --help`)"
        )
    from cli.local_server import server_for_run
    from cli.runner import run_with_progress

    server, started = server_for_run(settings, ephemeral)
    if started:
        console.print(
            f"started the factory's Prefect server: UI {server.ui_url} "
            "(reused by later runs; `factory server stop` stops it)"
        )

    mode = "off" if no_cache else "refresh" if refresh else "use"
    delivery = run_with_progress(
        order,
        store=resources.store.url,
        registry=str(registry.resolve()) if registry is not None else None,
        cache=mode,
        floor=not no_ingest,
        workers=settings.task_workers or default_task_workers(),
        timeouts=settings.store_timeouts,
        console=console,
        api_url=server.api_url if server else None,
        show=not as_json,
        verbose=verbose,
    )
    from storage.assets import get_asset

    temp = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(get_asset(resources.store, delivery.deliverable))
        temp.replace(target)
    except OSError as error:
        raise FactoryError(
            f"the deliverable is stored ({delivery.deliverable.uri}) but could not be copied "
            f"to {target}: {error.strerror or error}; rerun with another --out (the run is "
            "cached)"
        ) from None
    if as_json:
        # Highlighting a run's JSON costs 0.1 s; without colours (a pipe) it changes nothing.
        out.print_json(
            data={**delivery.model_dump(mode="json"), "path": str(target)},
            highlight=out.color_system is not None,
        )
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("deliverable", str(target))
    table.add_row("duration", f"{delivery.duration_s:.2f} s")
    table.add_row("digest", f"sha256:{delivery.deliverable.digest}")
    table.add_row("stored at", delivery.deliverable.uri)
    table.add_row("device-seconds", f"{delivery.device_seconds:.2f} ({_devices(delivery)})")
    table.add_row("quality", delivery.quality)
    hits = [run for run in delivery.runs if run.cache_hit]
    table.add_row(
        "cache",
        f"{len(hits)} of {len(delivery.runs)} stage runs reused earlier outputs"
        + (f" (mode {mode})" if mode != "use" else ""),
    )
    for run in delivery.runs:
        if run.cache_note:
            table.add_row("repaired", f"{run.stage} {run.segment_index}: {run.cache_note}")
    out.print(table)


def _check_output(target: Path, order_id: str) -> None:
    """Refuse an --out the deliverable could not be written to, before anything runs.

    The folder (or, while it does not exist yet, the nearest existing folder above it) must
    take a new file; nothing is left behind by the check.
    """
    if target.is_dir():
        raise BadInput(
            f"--out {target} is a directory; give a file path such as {target / order_id}.mp4"
        )
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise BadInput(f"--out {target} cannot be written: {folder} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".factory-out-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise BadInput(
            f"--out {target} cannot be written: {folder}: {error.strerror or error}"
        ) from None


def _resolve_target(target: str, store_spec: str | None, settings: Settings):
    """A file's bytes, or a digest (sha256:… or bare hex) to look up in the store."""
    store = open_store_option(store_spec, settings)
    path = Path(target)
    if path.is_file():
        return store, None, path.read_bytes()
    digest = target.removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadInput(f"{target} is neither a file nor an asset digest (sha256:<64 hex>)")
    return store, digest, None


def _tree(node, label, tree=None):
    from rich.tree import Tree

    text = label(node)
    branch = Tree(text) if tree is None else tree.add(text)
    for parent in node.parents:
        _tree(parent, label, branch)
    return branch


@app.command()
def verify(
    target: Annotated[
        str, typer.Argument(metavar="FILE_OR_DIGEST", help="An MP4 file, or sha256:DIGEST")
    ],
    store: StoreOption = None,
    trust: TrustOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Verify an asset's C2PA manifest and its whole signed lineage against the root you trust.

    Only keys and C2PA certificates that the trusted factory root certified count; keys
    merely present in the store do not. Checks the manifest (Trusted, every ingredient
    walked), every ancestor's lineage record signature, every hash link between records,
    every stored asset's bytes, and that each manifest names the parent records walked.
    Exit 0 only when everything verifies.
    """
    from storage.verification import verify as verify_asset

    settings = Settings()
    store_obj, digest, data = _resolve_target(target, store, settings)
    trusted = trusted_keys(store_obj, trust, settings)
    report = verify_asset(store_obj, trusted, digest=digest, data=data)
    if as_json:
        out.print_json(report.model_dump_json())
    else:

        def label(node) -> Text:
            mark = ("✗ ", "bold red") if node.problems else ("✓ ", "green")
            return Text.assemble(
                mark,
                (f"{node.stage or '?':<9} ", "bold"),
                f"sha256:{node.digest[:16]}…  {node.media_type or ''}",
                f"  model={node.model}" if node.model else "",
                _verdict_text(node.verdict),
            )

        out.print(_tree(report.tree, label))
        for problem in report.problems:
            out.print(Text.assemble(("  problem: ", "red"), problem))
        verdict = ("VERIFIED", "bold green") if report.verified else ("NOT VERIFIED", "bold red")
        out.print(Text.assemble(verdict, f"  sha256:{report.digest}"))
        out.print(f"trusted root sha256:{report.trusted_root}", style="dim", soft_wrap=True)
    if not report.verified:
        raise typer.Exit(1)


def _verdict_text(verdict) -> Text:
    if verdict is None:
        return Text("")
    outcome = ("accepted", "green") if verdict.passed else ("rejected", "red")
    failing = ", ".join(failure.metric or failure.expectation for failure in verdict.failures)
    return Text.assemble(
        "  ",
        outcome,
        f" by {verdict.suite} suite {verdict.suite_version}, take {verdict.attempt}",
        f" ({failing})" if failing else "",
    )


@app.command()
def lineage(
    target: Annotated[str, typer.Argument(metavar="DIGEST", help="sha256:DIGEST or an MP4 file")],
    store: StoreOption = None,
    trust: TrustOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ancestry as JSON")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Walk the store and verify every record now"),
    ] = False,
) -> None:
    """Show an asset's ancestry down to its renders, with models, training data and royalties.

    From the floor warehouse's lineage index when it holds the whole tree (each record
    was verified against the trusted factory root when it was ingested); otherwise, or
    with --verify, --store or --trust, every record is read from the store and verified
    now.
    """
    from factory.assets import sha256_hex
    from storage.ancestry import ancestry

    settings = Settings()
    store_obj, digest, data = _resolve_target(target, store, settings)
    digest = digest or sha256_hex(data)
    # The index answers for the factory's own store and root only: a named store or
    # trust root is walked and verified, whatever the warehouse holds.
    own = not (verify or trust or store)
    indexed = lineage_from_index(settings, digest) if own else None
    if indexed is not None:
        result = indexed[0]
        source = (
            f"the floor warehouse's lineage index {indexed[1]}: each record was verified "
            "against the factory's trusted root when it was ingested (--verify reads and "
            "verifies them in the store again)"
        )
    else:
        result = ancestry(store_obj, trusted_keys(store_obj, trust, settings), digest)
        source = "the store: every record verified now against the trusted root"
    if as_json:
        out.print_json(data={**result.model_dump(mode="json"), "source": source})
        return
    console.print(f"From {source}.", style="dim")

    def label(node) -> Text:
        model = f"  model={node.model}" if node.model else ""
        caption = node.parameters.get("caption") or node.parameters.get("prompt") or ""
        return Text.assemble(
            (f"{node.stage:<9} ", "bold"),
            f"sha256:{node.digest[:16]}…{model}",
            (f"  {caption}" if caption else "", "dim"),
        )

    out.print(_tree(result.tree, label))
    models = Table(title="Models")
    for column in ("model", "weights fingerprint", "trained on"):
        models.add_column(column)
    for model in result.models:
        models.add_row(
            model.name,
            model.weights_fingerprint[:16] + "…",
            "\n".join(source.source for source in model.training_provenance),
        )
    out.print(models)
    royalties = Table(title=f"Royalty split over {result.rendered_seconds:.1f} rendered seconds")
    for column in ("rights holder", "share", "seconds"):
        royalties.add_column(column)
    for line in result.royalties:
        royalties.add_row(line.holder, f"{line.share:.1%}", f"{line.seconds:.2f}")
    out.print(royalties)


def _devices(delivery) -> str:
    return ", ".join(sorted({run.device_class for run in delivery.runs}))


@app.command()
def models(registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """List the model registry: where each model's weights are, provenance and royalties."""
    from factory.registry import load_registry

    settings = Settings()
    reg = load_registry(registry or settings.registry)
    if as_json:
        out.print_json(
            data={
                "sources": [str(source) for source in reg.sources],
                "models": {
                    name: entry.model_dump(mode="json")
                    for name, entry in sorted(reg.models.items())
                },
            }
        )
        return
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


def _register_subcommands() -> None:
    from cli.assets import assets_app
    from cli.cache import cache_app
    from cli.floor import floor_app
    from cli.keys import keys_app
    from cli.qc import qc
    from cli.runs import runs_app, submit
    from cli.server import server_app

    app.add_typer(assets_app, name="assets")
    app.add_typer(cache_app, name="cache")
    app.add_typer(floor_app, name="floor", help="The factory floor: ingest, report, export")
    app.add_typer(keys_app, name="keys", help="Create, rotate and list the factory's signing keys")
    app.add_typer(runs_app, name="runs")
    app.add_typer(server_app, name="server")
    app.command()(submit)
    app.command()(qc)


_register_subcommands()


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
