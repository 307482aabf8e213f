"""OpenLineage run events for the factory's flow and stage runs, through ``openlineage-python``.

Each flow run and each stage run (a computed output or a cache reuse) is an OpenLineage
run: START, then COMPLETE or FAIL. Its datasets are store objects: namespace the store's
URL, name the object's key (``assets/sha256/ab/ab…``), so namespace and name together are
the asset's URI and the render's output is, by name, the composite's input. Run facets
carry what the factory knows that OpenLineage has no standard facet for: the cost
(device-seconds priced by the price card) and the models (weights fingerprints). Their
schemas ship beside this module (``openlineage_facets/``), each under its ``_schemaURL``.

The client's transport (file, HTTP to Marquez, Kafka…) comes from its standard settings
(``storage.openlineage_config``). Lineage is an observer: an event that cannot be sent
never fails a run. The first failure is logged once and the emitter sends nothing more for
that run, so an endpoint that is down (the HTTP transport retries 5 times, about 10 s)
costs a run one timeout, not one per event.
"""

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    JobFacet,
    RunFacet,
    error_message_run,
    job_type_job,
    parent_run,
)

import factory
from factory.assets import AssetRef, RunRecord
from factory.floor import PriceCard
from factory.registry import ModelInfo
from storage.openlineage_config import LineageRun, OpenLineageSettings

log = logging.getLogger("factory.openlineage")

PRODUCER = f"https://asset-factory.dev/factory/{factory.__version__}"
FACETS_URL = "https://asset-factory.dev/openlineage/facets/1-0-0/"
FACET_SCHEMAS = Path(__file__).with_name("openlineage_facets")
COST_FACET = "assetFactory_cost"
MODEL_FACET = "assetFactory_model"
INTEGRATION = "ASSET_FACTORY"


@attr.define
class CostRunFacet(RunFacet):
    """What the run cost: ``openlineage_facets/CostRunFacet.json``."""

    deviceClass: str
    deviceSeconds: float
    wallSeconds: float
    money: float
    currency: str
    cacheHit: bool

    @staticmethod
    def _get_schema() -> str:
        return FACETS_URL + "CostRunFacet.json#/$defs/CostRunFacet"


@attr.define
class ModelRunFacet(RunFacet):
    """The models behind the run's output: ``openlineage_facets/ModelRunFacet.json``."""

    models: list[dict]

    @staticmethod
    def _get_schema() -> str:
        return FACETS_URL + "ModelRunFacet.json#/$defs/ModelRunFacet"


class OpenLineageEmitter:
    """Sends the factory's run events through one OpenLineage client; never raises."""

    def __init__(
        self, client: OpenLineageClient, namespace: str, store_url: str, prices: PriceCard
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._datasets = _as_uri(store_url)
        self._prices = prices
        self._lock = threading.Lock()
        self._failed = False

    def __repr__(self) -> str:
        return f"OpenLineageEmitter(namespace={self._namespace!r})"

    def flow_started(self, run: LineageRun) -> None:
        self._emit(RunState.START, run)

    def flow_completed(
        self,
        run: LineageRun,
        output: AssetRef,
        stages: Sequence[RunRecord],
        wall_seconds: float,
        models: Sequence[ModelInfo],
    ) -> None:
        """COMPLETE with the deliverable, and the cost summed over the run's stage runs."""
        classes = sorted({stage.device_class for stage in stages})
        cost = self._cost(
            ",".join(classes),
            sum(stage.device_seconds for stage in stages),
            wall_seconds,
            all(stage.cache_hit for stage in stages),
            money=sum(self._price(s.device_class, s.device_seconds) for s in stages),
        )
        facets = {COST_FACET: cost, **_models_facet(models)}
        self._emit(RunState.COMPLETE, run, outputs=[output], facets=facets)

    def flow_failed(self, run: LineageRun, message: str) -> None:
        self._emit(RunState.FAIL, run, facets=_error(message))

    def stage_started(self, run: LineageRun, inputs: Sequence[AssetRef]) -> None:
        self._emit(RunState.START, run, inputs=inputs)

    def stage_completed(
        self,
        run: LineageRun,
        inputs: Sequence[AssetRef],
        output: AssetRef,
        record: RunRecord,
        models: Sequence[ModelInfo],
    ) -> None:
        cost = self._cost(
            record.device_class, record.device_seconds, record.wall_seconds, record.cache_hit
        )
        facets = {COST_FACET: cost, **_models_facet(models)}
        self._emit(RunState.COMPLETE, run, inputs=inputs, outputs=[output], facets=facets)

    def stage_failed(
        self,
        run: LineageRun,
        inputs: Sequence[AssetRef],
        error: BaseException,
        device_class: str,
        elapsed_s: float,
        models: Sequence[ModelInfo],
    ) -> None:
        """FAIL; like the floor's events, the failed attempt's elapsed time is device time."""
        facets = {
            COST_FACET: self._cost(device_class, elapsed_s, elapsed_s, False),
            **_models_facet(models),
            **_error(f"{type(error).__name__}: {error}"),
        }
        self._emit(RunState.FAIL, run, inputs=inputs, facets=facets)

    def _price(self, device_class: str, device_seconds: float) -> float:
        return device_seconds / 3600 * self._prices.rate(device_class)

    def _cost(
        self,
        device_class: str,
        device_seconds: float,
        wall_seconds: float,
        cache_hit: bool,
        money: float | None = None,
    ) -> CostRunFacet:
        return CostRunFacet(
            deviceClass=device_class,
            deviceSeconds=device_seconds,
            wallSeconds=wall_seconds,
            money=self._price(device_class, device_seconds) if money is None else money,
            currency=self._prices.currency,
            cacheHit=cache_hit,
            producer=PRODUCER,
        )

    def _emit(
        self,
        state: RunState,
        run: LineageRun,
        inputs: Sequence[AssetRef] = (),
        outputs: Sequence[AssetRef] = (),
        facets: dict[str, RunFacet] | None = None,
    ) -> None:
        run_facets: dict[str, RunFacet] = dict(facets or {})
        if run.parent is not None:
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=run.parent.run_id),
                job=parent_run.Job(namespace=self._namespace, name=run.parent.job),
                producer=PRODUCER,
            )
        job_type: JobFacet = job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration=INTEGRATION,
            jobType="TASK" if run.parent is not None else "FLOW",
            producer=PRODUCER,
        )
        event = RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=run.run_id, facets=run_facets),
            job=Job(namespace=self._namespace, name=run.job, facets={"jobType": job_type}),
            inputs=[InputDataset(namespace=self._datasets, name=a.key) for a in inputs],
            outputs=[OutputDataset(namespace=self._datasets, name=a.key) for a in outputs],
            producer=PRODUCER,
        )
        # One event at a time: stage tasks run on several threads, and a file transport
        # appends lines to one file.
        with self._lock:
            if self._failed:
                return
            try:
                self._client.emit(event)
            except Exception as error:
                self._failed = True
                log.warning(
                    "could not send an OpenLineage event (%s %s): %s: %s; this run sends "
                    "no more (check the OPENLINEAGE_* settings or the lineage endpoint)",
                    run.job,
                    state.value,
                    type(error).__name__,
                    error,
                )


def open_emitter(
    settings: OpenLineageSettings, store_url: str, prices: PriceCard
) -> OpenLineageEmitter | None:
    """An emitter on the client its standard settings describe; None (and a warning) when
    they cannot make one: lineage never stops the factory."""
    try:
        client = OpenLineageClient()
    except Exception as error:
        log.warning(
            "OpenLineage is configured (%s) but its client cannot start: %s: %s; no lineage "
            "events will be sent",
            settings.configured_by,
            type(error).__name__,
            error,
        )
        return None
    return OpenLineageEmitter(client, settings.namespace, store_url, prices)


def _as_uri(store_url: str) -> str:
    # A local store's URL is its directory; a dataset namespace is a URI.
    return store_url if "://" in store_url else Path(store_url).absolute().as_uri()


def _models_facet(models: Sequence[ModelInfo]) -> dict[str, RunFacet]:
    if not models:
        return {}
    return {
        MODEL_FACET: ModelRunFacet(
            models=[
                {
                    "name": model.name,
                    "weightsFingerprint": model.weights_fingerprint,
                    "trainingProvenance": [
                        source.model_dump(exclude_none=True) for source in model.training_provenance
                    ],
                    "royaltyRouting": [share.model_dump() for share in model.royalty_routing],
                }
                for model in models
            ],
            producer=PRODUCER,
        )
    }


def _error(message: str) -> dict[str, RunFacet]:
    return {
        "errorMessage": error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="python", producer=PRODUCER
        )
    }
