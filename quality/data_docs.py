"""Great Expectations Data Docs for validations already run, built offline into a folder.

The pages are written without any network access; opened in a browser they load their
stylesheets and scripts from public CDNs, so offline they show unstyled but complete.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory.errors import BadInput

_SITE = "factory_qc"


def build_data_docs(results: Iterable[Any], directory: Path, run_name: str = "qc") -> Path:
    """Write Data Docs for ``results`` (GX validation results, e.g. ``Judge.validations``)
    into ``directory``; the path of its ``index.html``.

    Each result gets a page under ``validations/<suite>/<run_name>/…``, linked from the index.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    results = list(results)
    if not results:
        raise BadInput("no validations to build Data Docs for: run a suite first")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"--docs {directory} cannot be created: {error.strerror}") from None
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    context.add_data_docs_site(
        _SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(directory.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    run = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    for index, result in enumerate(results):
        suite = result.suite_name
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
            run_id=run,
            batch_identifier=f"{suite}-{index + 1}",
        )
        # Batch.validate leaves the run out of the result; the page header shows it.
        result.meta.setdefault("run_id", run)
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[_SITE])
    return directory / "index.html"
