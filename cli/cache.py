"""`factory cache`: inspect and garbage-collect the segment cache."""

import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import JsonOption, StoreOption, open_store_option, trusted_keys
from factory.errors import BadInput
from factory.settings import Settings
from storage.objectstore import ObjectStore
from storage.trust import TrustedKeys

cache_app = typer.Typer(no_args_is_help=True, help="Inspect and garbage-collect the segment cache")
out = Console()

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = _AGE.match(text.strip())
    if match is None:
        raise BadInput(f"--older-than {text!r}: give a number and a unit, like 30m, 12h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _store(spec: str | None) -> tuple[ObjectStore, TrustedKeys]:
    # The cache is the factory's own: its records are judged against this factory's root.
    settings = Settings()
    opened = open_store_option(spec, settings)
    return opened, trusted_keys(opened, None, settings)


@cache_app.command()
def stats(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Entries, bytes, hit rate and device-seconds saved, per stage."""
    from storage.cache_maintenance import cache_stats

    result = cache_stats(*_store(store))
    if as_json:
        out.print_json(result.model_dump_json())
        return
    table = Table(title=f"Segment cache (hit rate {result.hit_rate:.1%})")
    for column in ("stage", "entries", "MB", "computed", "reused", "device-s saved"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for s in result.stages:
        table.add_row(
            s.stage,
            str(s.entries),
            f"{s.bytes / 1e6:.1f}",
            str(s.computed),
            str(s.reused),
            f"{s.device_seconds_saved:.2f}",
        )
    out.print(table)


@cache_app.command()
def gc(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of entries to drop: 30m, 12h, 7d, 2w")
    ],
    store: StoreOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, change nothing")] = False,
) -> None:
    """Drop old cache entries and the assets only they kept; delivered lineage is never removed."""
    from storage.cache_maintenance import collect_garbage

    result = collect_garbage(*_store(store), parse_age(older_than), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{verb} {result.entries_removed} entries and {result.assets_removed} assets "
        f"({result.bytes_freed / 1e6:.1f} MB); kept {result.assets_kept_for_deliverables} "
        "assets that delivered outputs' lineage references"
    )
