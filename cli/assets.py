"""`factory assets put`: upload an order's input image to the store, get its digest.

An order sent through Prefect's API cannot carry a file, and a path means nothing to the
process that runs it: upload the image once, then name it by digest in the order.
"""

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.common import StoreOption
from factory.settings import Settings

assets_app = typer.Typer(
    help="Inputs in the store: upload logos and backgrounds for orders sent through the API.",
    no_args_is_help=True,
)
out = Console()


@assets_app.command("put")
def put(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A PNG or JPEG image")],
    store: StoreOption = None,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="What the image is for, kept in its ingest record: logo, "
            "background_image or input",
        ),
    ] = "input",
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored asset as JSON")] = False,
) -> None:
    """Upload an input image to the store (content-addressed) and print its digest.

    The image is checked as an order's images are (PNG or JPEG, size, decoding), stored
    under its SHA-256 with a signed `ingest` lineage record, and printed as sha256:<hex>:
    put that in an order's composite.logo or composite.background_image.
    """
    from factory.errors import BadInput
    from tasks.prepare import read_image_file
    from tasks.provenance import RunContext, ingest_input
    from tasks.resources import open_resources

    if role not in ("input", "logo", "background_image"):
        raise BadInput(f"--role {role!r}: give logo, background_image or input")
    data, media_type = read_image_file(file, role)
    resources = open_resources(Settings(), "cpu", store)
    context = RunContext(order_id="assets-put", flow_run_id=str(uuid.uuid4()))
    recorded = ingest_input(resources, data, media_type, role, context)
    if as_json:
        out.print_json(
            data={**recorded.asset.model_dump(mode="json"), "store": resources.store.url}
        )
        return
    out.print(f"sha256:{recorded.asset.digest}", soft_wrap=True)
