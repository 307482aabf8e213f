"""Whether OpenLineage is configured, and what names a run, without importing the client.

The ``openlineage-python`` client finds its transport in, by its own precedence: an
``openlineage.yml`` (``OPENLINEAGE_CONFIG``, else the working directory, else
``~/.openlineage/``), ``OPENLINEAGE__…`` variables (``OPENLINEAGE__TRANSPORT__TYPE=file``…)
and ``OPENLINEAGE_URL``; ``OPENLINEAGE_DISABLED=true`` turns it off. With none of them it
would print every event to the console, which a factory must not do unasked, so the
factory emits only when one of these is present. Importing the client costs 0.45 to 1 s
(bench/RESULTS.md), so this check does not import it: a factory that does not emit lineage
pays nothing for it.

The namespace of the factory's jobs is ``OPENLINEAGE_NAMESPACE``, as in OpenLineage's
integrations, else ``asset-factory``.

``LineageRun`` is how callers name a run to the emitter (``storage.openlineage``); it
lives here so that naming a run does not import the client either.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

DEFAULT_NAMESPACE = "asset-factory"
CONFIG_FILE = "openlineage.yml"


class OpenLineageSettings(BaseModel):
    """OpenLineage is on: where the client will find its transport, and the jobs' namespace."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    configured_by: str


class LineageRun(BaseModel):
    """One OpenLineage run: its job's name, its UUID and, for a stage, the flow run above it."""

    model_config = ConfigDict(frozen=True)

    job: str
    run_id: str
    parent: "LineageRun | None" = None


def openlineage_settings(
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> OpenLineageSettings | None:
    """The settings when the client's standard settings configure it, else None (emit nothing)."""
    env = os.environ if environ is None else environ
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    source = _configured_by(env, cwd or Path.cwd(), home or Path.home())
    if source is None:
        return None
    namespace = env.get("OPENLINEAGE_NAMESPACE", "").strip() or DEFAULT_NAMESPACE
    return OpenLineageSettings(namespace=namespace, configured_by=source)


def _configured_by(env: Mapping[str, str], cwd: Path, home: Path) -> str | None:
    named = env.get("OPENLINEAGE_CONFIG")
    for path, what in (
        (Path(named) if named else None, "OPENLINEAGE_CONFIG"),
        (cwd / CONFIG_FILE, str(cwd / CONFIG_FILE)),
        (home / ".openlineage" / CONFIG_FILE, str(home / ".openlineage" / CONFIG_FILE)),
    ):
        if path is not None and path.is_file():
            return what
    variables = sorted(name for name in env if name.startswith("OPENLINEAGE__"))
    if variables:
        return variables[0]
    if env.get("OPENLINEAGE_URL"):
        return "OPENLINEAGE_URL"
    return None
