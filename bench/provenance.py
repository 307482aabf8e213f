"""What provenance costs: one lineage record, verifying a deliverable, C2PA signing it.

    .venv/bin/python -m bench.provenance [--order examples/demo.yaml]

Produces the order once through the flow, then measures, against the same run:
- signing and writing one lineage record on the local store (goal ≤ 2 ms median);
- `factory verify` of the deliverable with every ancestor (C2PA with ingredients,
  every record signature and link, every stored asset's bytes), as a share of the
  deliverable's encode time, i.e. the sum of its segments' encode device-seconds
  (goal ≤ 5%);
- C2PA signing of the deliverable (12 segments as ingredients) as a share of the
  same encode time.
"""

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.common import emit, median, timed
from factory.assets import sha256_hex
from factory.lineage import AssetInfo, LineageRecord, StageInfo, sign_record
from factory.orders import load_order
from factory.settings import Settings
from media.credentials import Ingredient
from storage.assets import get_asset
from storage.lineage import RecordStore
from storage.local import LocalStore
from storage.trust import load_trusted_keys, resolve_anchor
from storage.verification import verify
from tasks.provenance import code_info
from tasks.resources import Signers

EXAMPLES = Path(__file__).parent.parent / "examples"


def record_cost(store: LocalStore, signers: Signers, rounds: int) -> list[float]:
    signer = signers.lineage
    records = RecordStore(store)
    now = datetime.now(UTC)
    times = []
    for _ in range(rounds):
        digest = sha256_hex(uuid.uuid4().bytes)
        record = LineageRecord(
            asset=AssetInfo(digest=digest, media_type="video/mp4", size=1, uri=f"file:///{digest}"),
            stage=StageInfo(name="bench", version="1"),
            order_id="bench",
            flow_run_id="bench-records",
            task_run_id="none",
            parameters={"seed": 1, "steps": 4, "width": 640, "height": 360},
            device_class="cpu",
            device_seconds=1.0,
            started=now,
            ended=now,
            code=code_info(),
            key_id=signer.key_id,
        )
        start = time.perf_counter()
        records.write(sign_record(record, signer), digest, "bench-records")
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", type=Path, default=EXAMPLES / "demo.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-provenance-"))
    os.environ["FACTORY_HOME"] = str(work / "home")
    from flows.produce import produce

    delivery = produce(load_order(args.order), str(work / "store"))
    store = LocalStore(work / "store")
    encode_s = sum(run.device_seconds for run in delivery.runs if run.stage == "encode")

    verify_times = []
    for _ in range(args.rounds):
        # As `factory verify` does it: the trusted keys are read from the store each time.
        seconds, report = timed(
            lambda: verify(
                store,
                load_trusted_keys(store, resolve_anchor(None, Settings().keys_dir)),
                digest=delivery.deliverable.digest,
            )
        )
        assert report.verified, report.problems
        verify_times.append(seconds)

    signers = Signers.load(Settings().keys_dir)
    records = RecordStore(store)
    from factory.lineage import verify_record
    from storage.keys import load_public_keys

    deliverable_record = verify_record(
        records.read(delivery.deliverable.digest), load_public_keys(store)
    )
    segments = [
        Ingredient(
            data=get_asset(store, _ref(store, parent.digest)),
            title=f"segment {position}",
            label=f"segment-{position}",
        )
        for position, parent in enumerate(deliverable_record.parents)
    ]
    unsigned = get_asset(store, delivery.deliverable)
    sign_times = []
    for _ in range(args.rounds):
        seconds, _ = timed(
            lambda: signers.credentials.sign(
                unsigned,
                action="assembled",
                title="bench",
                components=segments,
                provenance={"bench": True},
            )
        )
        sign_times.append(seconds)

    record_times = record_cost(LocalStore(work / "records"), signers, 500)
    emit(
        "provenance",
        {
            "order": args.order.name,
            "deliverable_bytes": delivery.deliverable.size,
            "ancestors_verified": len(report.tree.parents),
            "encode_device_s": round(encode_s, 3),
            "record_sign_write_ms_median": round(median(record_times) * 1000, 3),
            "record_goal": "<= 2 ms",
            "verify_s_median": round(median(verify_times), 4),
            "verify_share_of_encode": round(median(verify_times) / encode_s, 4),
            "verify_goal": "<= 0.05",
            "c2pa_sign_deliverable_s_median": round(median(sign_times), 4),
            "c2pa_sign_share_of_encode": round(median(sign_times) / encode_s, 4),
        },
    )


def _ref(store: LocalStore, digest: str):
    from factory.assets import AssetRef
    from storage.assets import asset_key

    key = asset_key(digest)
    info = store.head(key)
    return AssetRef(
        digest=digest, uri=store.uri(key), key=key, media_type="video/mp4", size=info.size
    )


if __name__ == "__main__":
    main()
