"""What a finished run tells its caller: the deliverable verified, priced, shown and logged.

The flow's return value is its persisted result (``tasks.results``); the same facts go into
a markdown artifact on the flow run (the UI's Artifacts tab, ``/api/artifacts/filter``) and
one log line with the digest, so an operator reading logs finds the deliverable too.
"""

import re
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from factory.assets import Delivery
from factory.floor import load_price_card
from quality.data_docs import build_data_docs
from quality.lineage_table import lineage_frame
from quality.thresholds import Thresholds
from storage.lineage_reader import LineageReader
from storage.trust import load_trusted_keys, resolve_anchor
from storage.verification import verify
from tasks.judging import judging
from tasks.resources import Resources


def artifact_key(order_id: str) -> str:
    """The delivery artifact's key: Prefect wants lowercase letters, digits and dashes."""
    return "delivery-" + re.sub(r"[^a-z0-9-]+", "-", order_id.lower()).strip("-")


def _priced(delivery: Delivery) -> tuple[float, str]:
    card = load_price_card()
    cost = sum(run.device_seconds / 3600 * card.rate(run.device_class) for run in delivery.runs)
    return cost, card.currency


def markdown(delivery: Delivery) -> str:
    """The delivery as a markdown table for the flow run's artifact."""
    devices = ", ".join(sorted({run.device_class for run in delivery.runs}))
    hits = sum(run.cache_hit for run in delivery.runs)
    rows = [
        ("deliverable", delivery.deliverable.uri),
        ("digest", f"`sha256:{delivery.deliverable.digest}`"),
        ("record digest", f"`sha256:{delivery.record_digest}`"),
        ("duration", f"{delivery.duration_s:.2f} s"),
        ("verification", delivery.verdict),
        ("quality", delivery.quality),
        ("quality docs", delivery.qc_docs or "none (nothing judged this run)"),
        ("device-seconds", f"{delivery.device_seconds:.2f} ({devices})"),
        (
            "cost",
            "unknown"
            if delivery.cost is None
            else f"{delivery.cost:.6f} {delivery.currency} (this run's stages, price card)",
        ),
        ("cache", f"{hits} of {len(delivery.runs)} stage runs reused earlier outputs"),
        ("store", delivery.store),
    ]
    lines = [f"# Delivered order `{delivery.order_id}`", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value.replace('|', '/')} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def _data_docs(resources: Resources, validations: list, delivery: Delivery) -> Path | None:
    """Data Docs of the run's validations, beside the others; a failure to build them costs
    the run nothing but a warning."""
    directory = resources.settings.qc_docs_dir / delivery.flow_run_id
    try:
        return build_data_docs(validations, directory, run_name=f"{delivery.order_id}")
    except Exception as error:
        get_run_logger().warning("Data Docs for this run were not built: %s", error)
        return None


def publish_delivery(resources: Resources, delivery: Delivery, thresholds: Thresholds) -> Delivery:
    """Verify the deliverable against the factory's root, judge the run's lineage, price the
    run, publish all three.

    Returns ``delivery`` with its verdicts and cost; the artifact and the log line carry the
    digest, URI, duration, verdicts and cost.
    """
    anchor = resolve_anchor(resources.settings.trust, resources.settings.keys_dir)
    trusted = load_trusted_keys(resources.store, anchor)
    report = verify(resources.store, trusted, digest=delivery.deliverable.digest)
    cost, currency = _priced(delivery)
    # A run that only reused wrote reuse records alone; judging them would import Great
    # Expectations into every warm run for no new fact (verify walked the lineage above).
    computed = not all(run.cache_hit for run in delivery.runs)
    lineage, docs = None, None
    if computed:
        frame = lineage_frame(LineageReader(resources.store, trusted), delivery.flow_run_id)
        with judging(thresholds) as judge:
            lineage = judge.judge_lineage(frame)
            validations = judge.take_validations()
        docs = _data_docs(resources, validations, delivery)
    problems = list(report.problems)
    if lineage is not None and not lineage.passed:
        problems.append(lineage.describe())
    done = delivery.model_copy(
        update={
            "verified": report.verified and (lineage is None or lineage.passed),
            "problems": problems,
            "lineage_verdict": lineage,
            "qc_docs": str(docs) if docs else None,
            "cost": cost,
            "currency": currency,
        }
    )
    create_markdown_artifact(
        markdown(done), key=artifact_key(done.order_id), description="The delivered asset"
    )
    get_run_logger().info(
        "delivered order %s: sha256:%s at %s, %.2f s, %s, %.6f %s",
        done.order_id,
        done.deliverable.digest,
        done.deliverable.uri,
        done.duration_s,
        done.verdict,
        cost,
        currency,
    )
    return done
