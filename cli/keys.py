"""`factory keys`: create, rotate and list the factory's signing keys; print its trust root.

Only key ids, fingerprints and paths are ever printed; private keys stay in the keys
directory.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import JsonOption, StoreOption, open_store_option
from factory.errors import BadInput
from factory.settings import Settings
from storage import keys
from storage.objectstore import ObjectStore
from storage.trust import load_trusted_keys, resolve_anchor

keys_app = typer.Typer(
    help="The factory's signing keys: the root verifiers trust, lineage (Ed25519) and C2PA.",
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
    out.print(f"factory root sha256:{keys.root_fingerprint(keys_dir)}", soft_wrap=True)
    out.print(f"private keys in {keys_dir}", soft_wrap=True)
    out.print(f"public keys published to {target.url}", soft_wrap=True)


@keys_app.command("rotate")
def rotate_keys(store: StoreOption = None, keys_dir: KeysDirOption = None) -> None:
    """Sign from now on with a new key; old keys stay published so old records verify."""
    keys_dir, target = _open(keys_dir, store)
    if keys.active_key_id(keys_dir) is None:
        raise BadInput(f"No keys in {keys_dir} to rotate; run `factory keys init` first.")
    retired = keys.active_key_id(keys_dir)
    key_id = keys.rotate(keys_dir)
    # A record must never be signed by a key verifiers cannot find.
    keys.publish_public_keys(keys_dir, target)
    out.print(f"active lineage key is now {key_id}, certified by the factory root", soft_wrap=True)
    out.print(f"retired {retired}: what it signed still verifies", soft_wrap=True)
    out.print(f"public keys published to {target.url}", soft_wrap=True)


@keys_app.command("list")
def list_keys(
    store: StoreOption = None, keys_dir: KeysDirOption = None, as_json: JsonOption = False
) -> None:
    """Lineage keys in the store: whether this factory's root certified them, and which signs.

    A key marked untrusted sits in the store without a statement from the root: verifiers
    reject what it signed. Find out who wrote it.
    """
    keys_dir, target = _open(keys_dir, store)
    trusted = load_trusted_keys(target, resolve_anchor(None, keys_dir))
    published = keys.load_public_keys(target)
    active = keys.active_key_id(keys_dir)
    local = set(keys.local_key_ids(keys_dir))
    if as_json:
        out.print_json(
            data={
                "store": target.url,
                "root": f"sha256:{trusted.root}",
                "c2pa_roots": len(trusted.c2pa_roots),
                "keys": [
                    {
                        "key_id": key_id,
                        "trust": trusted.status(key_id),
                        "published": key_id in published,
                        "active": key_id == active,
                        "on_disk": key_id in local,
                    }
                    for key_id in sorted(published.keys() | local | trusted.lineage.keys())
                ],
            }
        )
        return
    table = Table(title=f"Lineage keys in {target.url}, judged by root sha256:{trusted.root}")
    table.add_column("key id", overflow="fold")
    table.add_column("trust")
    table.add_column("published")
    table.add_column("here")
    for key_id in sorted(published.keys() | local | trusted.lineage.keys()):
        status = trusted.status(key_id)
        table.add_row(
            key_id,
            f"[red]{status}[/red]" if status == "untrusted" else status,
            "yes" if key_id in published else "no",
            "active" if key_id == active else ("on disk" if key_id in local else ""),
        )
    out.print(table)
    out.print(f"{len(trusted.c2pa_roots)} C2PA root certificate(s) certified by the root")


@keys_app.command("trust")
def trust_root(
    keys_dir: KeysDirOption = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the trust file (the root's public key, PEM) here."),
    ] = None,
) -> None:
    """Print the factory root's fingerprint: what a verifier pins with `--trust`.

    Hand the fingerprint (or the trust file from --out) to whoever verifies this factory's
    output, over a channel you trust; the store is not that channel.
    """
    keys_dir = keys_dir or Settings().keys_dir
    pem = keys.root_public_pem(keys_dir)
    if pem is None:
        raise BadInput(f"No factory root in {keys_dir}; run `factory keys init` first.")
    if out_file is not None:
        out_file.write_bytes(pem)
        out.print(f"trust file written to {out_file}", soft_wrap=True)
    out.print(f"sha256:{keys.root_fingerprint(keys_dir)}", soft_wrap=True)
