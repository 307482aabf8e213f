"""`factory keys`: create, rotate and list the factory's lineage signing keys.

Only key ids and paths are ever printed; private keys stay in the keys directory.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import StoreOption, open_store_option
from factory.errors import BadInput
from factory.settings import Settings
from storage import keys
from storage.objectstore import ObjectStore

keys_app = typer.Typer(
    help="The factory's signing keys: lineage (Ed25519) and C2PA.",
    no_args_is_help=True,
)
out = Console()

KeysDirOption = Annotated[
    Path | None,
    typer.Option(
        "--keys-dir",
        help="Where the private keys live (kept mode 0700). Default: $FACTORY_HOME/keys.",
        show_default=False,
    ),
]


def _open(keys_dir: Path | None, store: str | None) -> tuple[Path, ObjectStore]:
    settings = Settings()
    return keys_dir or settings.keys_dir, open_store_option(store, settings)


@keys_app.command("init")
def init_keys(store: StoreOption = None, keys_dir: KeysDirOption = None) -> None:
    """Create the signing keys where absent and publish their public halves to the store."""
    keys_dir, target = _open(keys_dir, store)
    key_id, created = keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, target)
    out.print(f"{'created' if created else 'existing'} lineage key {key_id}", soft_wrap=True)
    out.print(f"private keys in {keys_dir}", soft_wrap=True)
    out.print(f"public keys published to {target.url}", soft_wrap=True)


@keys_app.command("rotate")
def rotate_keys(store: StoreOption = None, keys_dir: KeysDirOption = None) -> None:
    """Sign from now on with a new key; old keys stay published so old records verify."""
    keys_dir, target = _open(keys_dir, store)
    if keys.active_key_id(keys_dir) is None:
        raise BadInput(f"No keys in {keys_dir} to rotate; run `factory keys init` first.")
    key_id = keys.rotate(keys_dir)
    # A record must never be signed by a key verifiers cannot find.
    keys.publish_public_keys(keys_dir, target)
    out.print(f"active lineage key is now {key_id}", soft_wrap=True)
    out.print(f"public keys published to {target.url}", soft_wrap=True)


@keys_app.command("list")
def list_keys(store: StoreOption = None, keys_dir: KeysDirOption = None) -> None:
    """Key ids published in the store, and which one signs here."""
    keys_dir, target = _open(keys_dir, store)
    published = keys.load_public_keys(target)
    active = keys.active_key_id(keys_dir)
    local = set(keys.local_key_ids(keys_dir))
    table = Table(title=f"Lineage keys in {target.url}")
    table.add_column("key id", overflow="fold")
    table.add_column("published")
    table.add_column("here")
    for key_id in sorted(published.keys() | local):
        table.add_row(
            key_id,
            "yes" if key_id in published else "no",
            "active" if key_id == active else ("retired" if key_id in local else ""),
        )
    out.print(table)
    roots = keys.load_c2pa_roots(target)
    out.print(f"{len(roots)} C2PA root certificate(s) published")
