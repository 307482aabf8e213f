"""The warehouse as a lakehouse: readers in other processes while ingests write, two
ingests at once, the data path on S3, and the way from the single-file warehouse.

The store is test_floor's fixture (two orders, a forged record) plus enough event
batches that an ingest takes several commits.
"""

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from factory.errors import BadInput
from factory.floor import FloorEvent
from storage import keys
from storage.floor_events import EventWriter
from storage.local import LocalStore
from storage.trust import local_anchor
from storage.warehouse import Warehouse, WarehouseLocation
from storage.warehouse.extensions import extension_path
from tests.test_floor import BUDGET, PRICES, populate

ROOT = Path(__file__).parent.parent
EXTRA_BATCHES, PER_BATCH = 60, 200
EVENTS = 22 + EXTRA_BATCHES * PER_BATCH


def write_extra_events(store: LocalStore) -> None:
    t0 = datetime(2026, 1, 7, tzinfo=UTC)
    writer = EventWriter(store)
    for batch in range(EXTRA_BATCHES):
        events = []
        for n in range(PER_BATCH):
            start = t0 + timedelta(seconds=batch * PER_BATCH + n)
            events.append(
                FloorEvent(
                    event_id=f"e{batch:04d}{n:04d}".ljust(32, "0"),
                    order_id=f"x{batch}",
                    flow_run_id=f"fx{batch}",
                    task_run_id=f"tx{batch}-{n}",
                    segment_index=n % 4,
                    stage="render",
                    model="wan-a",
                    device_class="cpu",
                    worker_id="w9:909",
                    started=start,
                    ended=start + timedelta(seconds=1),
                    device_seconds=0.9,
                    status="completed",
                    output_digest=f"{batch:08d}{n:056d}",
                )
            )
        writer.write_batch(f"fx{batch}", "final", events)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lake")
    store = LocalStore(root / "store")
    populate(store, root / "keys")
    write_extra_events(store)
    return root / "store", root / "keys"


INGEST = """
import json, sys
from pathlib import Path
from storage.local import LocalStore
from storage.trust import local_anchor
from storage.warehouse import Warehouse
from tests.test_floor import BUDGET, PRICES
warehouse = Warehouse(sys.argv[1], price_card=PRICES, latency_budget=BUDGET)
report = warehouse.ingest(LocalStore(sys.argv[2]), local_anchor(Path(sys.argv[3])), batch_objects=4)
print(json.dumps({"seconds": report.seconds, "added": report.added}))
"""

# An analyst's own DuckDB: the extensions from their wheels, the lake attached read-only.
# One thread and a short pause between rounds, so on a 2-core machine what the ingest
# could lose to the reader is a share of the CPU, not the locks this test is about.
READER = """
import json, sys, time
from pathlib import Path
import duckdb
con = duckdb.connect(config={"threads": 1})
for path in sys.argv[3:]:
    con.execute(f"install '{path}'")
con.execute("load ducklake")
con.execute("load sqlite")
con.execute(f"attach 'ducklake:sqlite:{sys.argv[1]}' as floor (read_only)")
con.execute("use floor")
stop = Path(sys.argv[2])
seen, errors, latencies = [], [], []
while not stop.exists():
    start = time.perf_counter()
    try:
        seen.append(con.execute("select count(*) from stg_events").fetchone()[0])
        con.execute("select * from yield").fetchall()
    except duckdb.Error as error:
        errors.append(str(error))
    latencies.append(time.perf_counter() - start)
    time.sleep(0.1)
seen.append(con.execute("select count(*) from stg_events").fetchone()[0])
print(json.dumps({"seen": seen, "errors": errors, "max_s": max(latencies)}))
"""


def run_ingest(catalog: Path, store: Path, keys: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", INGEST, str(catalog), str(store), str(keys)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def new_lake(path: Path) -> Warehouse:
    warehouse = Warehouse(path, price_card=PRICES, latency_budget=BUDGET)
    warehouse.refresh_models()  # the catalog and views exist before anyone reads
    return warehouse


def test_a_reader_in_another_process_never_blocks_or_fails_an_ingest(big_store, tmp_path):
    store, keys = big_store
    alone = new_lake(tmp_path / "alone.sqlite")
    started = time.perf_counter()
    finished(run_ingest(alone.location.sqlite_path, store, keys))
    without_reader = time.perf_counter() - started

    watched = new_lake(tmp_path / "watched.sqlite")
    stop = tmp_path / "stop"
    extensions = [str(extension_path(name)) for name in ("ducklake", "sqlite")]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(watched.location.sqlite_path), str(stop), *extensions],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the reader is attached and querying before the ingest starts
        started = time.perf_counter()
        report = finished(run_ingest(watched.location.sqlite_path, store, keys))
        with_reader = time.perf_counter() - started
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    read = json.loads(out)
    assert read["errors"] == []
    # It read while the ingest committed batch after batch, and saw the end result.
    assert len(read["seen"]) > 3 and read["seen"][-1] == EVENTS
    assert report["added"]["raw_events"] == EVENTS
    assert with_reader < 2 * without_reader + 1, (with_reader, without_reader)


def test_two_ingests_from_two_processes_both_land_once(big_store, tmp_path):
    store, keys = big_store
    warehouse = new_lake(tmp_path / "both.sqlite")
    catalog = warehouse.location.sqlite_path
    first, second = run_ingest(catalog, store, keys), run_ingest(catalog, store, keys)
    reports = [finished(first), finished(second)]
    # Every event went in once, whichever process loaded it.
    assert sum(r["added"]["raw_events"] for r in reports) == EVENTS
    _, rows = warehouse.query(
        "select count(*), count(distinct event_id) from raw_events "
        "union all select count(*), count(distinct uri) from ingested_objects "
        "union all select count(*), count(distinct asset_digest) from raw_lineage"
    )
    assert rows == [(EVENTS, EVENTS), (15 + EXTRA_BATCHES, 15 + EXTRA_BATCHES), (7, 7)]
    again = warehouse.ingest(LocalStore(store), local_anchor(keys))
    assert set(again.added.values()) == {0}
    assert warehouse.counts()["raw_events"] == EVENTS


def test_the_single_file_warehouse_gets_a_migration_message(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.floor import floor_app

    with pytest.raises(BadInput, match=r"before DuckLake.*factory floor ingest"):
        Warehouse(tmp_path / "floor.duckdb")
    runner = CliRunner()
    refused = runner.invoke(floor_app, ["report", "--warehouse", str(tmp_path / "floor.duckdb")])
    assert refused.exit_code == 2 and "export --duckdb" in refused.output
    # An old default warehouse file is named, and the lake is rebuilt from the store.
    home = tmp_path / "home"
    home.mkdir()
    (home / "floor.duckdb").write_bytes(b"old")
    monkeypatch.setenv("FACTORY_HOME", str(home))
    keys.init(tmp_path / "keys")
    monkeypatch.setenv("FACTORY_TRUST", f"sha256:{keys.root_fingerprint(tmp_path / 'keys')}")
    (tmp_path / "store").mkdir()
    ingest = runner.invoke(floor_app, ["ingest", "--store", str(tmp_path / "store")])
    assert ingest.exit_code == 0, ingest.output
    assert "single-file warehouse of earlier versions" in ingest.output
    assert (home / "floor" / "catalog.sqlite").is_file()


def test_a_postgres_catalog_needs_a_shared_data_path():
    with pytest.raises(BadInput, match="FACTORY_WAREHOUSE_DATA"):
        WarehouseLocation.of("postgres:dbname=floor host=db")
    where = WarehouseLocation.of("postgres:dbname=floor host=db", "s3://lake/floor")
    assert (where.catalog, where.data, where.exists()) == (
        "postgres:dbname=floor host=db",
        "s3://lake/floor/",
        True,
    )


def test_the_readme_attach_commands_work_as_written(big_store, tmp_path):
    # storage/sql/README.md tells analysts how to attach the lake from their own DuckDB;
    # its commands run here with the placeholders filled in, in a DuckDB of their own.
    text = (ROOT / "storage" / "sql" / "README.md").read_text()
    block = re.search(r"```sql\n(-- Attach the lake.*?)```", text, re.S).group(1)
    warehouse = new_lake(tmp_path / "catalog.sqlite")
    warehouse.ingest(LocalStore(big_store[0]), local_anchor(big_store[1]))
    site = str(extension_path("ducklake").parents[3])
    script = block.replace("/path/to/site-packages", site).replace(
        "/home/you/.cache/asset-factory/floor/catalog.sqlite", str(warehouse.location.sqlite_path)
    )
    con = duckdb.connect()
    con.execute(script)
    assert con.execute("select count(*) from stg_events").fetchone() == (EVENTS,)
    assert con.execute("select sum(delivered_minutes) from royalties").fetchone() == (3.0,)


@pytest.mark.s3
def test_the_lake_keeps_its_parquet_on_s3(s3_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of the lake may land in the working directory
    bucket = s3_env.make_bucket()
    store = LocalStore(tmp_path / "store")
    populate(store, tmp_path / "keys")
    write_extra_events(store)
    warehouse = Warehouse(
        tmp_path / "catalog.sqlite",
        f"s3://{bucket}/warehouse",
        price_card=PRICES,
        latency_budget=BUDGET,
    )
    report = warehouse.ingest(store, local_anchor(tmp_path / "keys"), batch_objects=20)
    assert report.added["raw_events"] == EVENTS
    assert warehouse.counts()["raw_events"] == EVENTS
    _, rows = warehouse.query("select sum(accepted_passes) from yield where model = 'wan-b'")
    assert rows == [(2,)]
    names = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert names and all(name.startswith("warehouse/") for name in names)
    assert any(name.endswith(".parquet") for name in names)
    assert not (tmp_path / "s3:").exists()


def test_compaction_merges_small_files_and_changes_no_answer(big_store, tmp_path):
    from typer.testing import CliRunner

    from cli.floor import floor_app

    store, keys_dir = big_store
    warehouse = new_lake(tmp_path / "small.sqlite")
    warehouse.ingest(LocalStore(store), local_anchor(keys_dir), batch_objects=4)
    # (Sums of doubles are rounded: merged files add them up in another order.)
    answers = (
        "select day, model, attempted_passes, accepted_passes, "
        "round(attempted_device_seconds, 6) from yield order by all"
    )
    counts, before = warehouse.counts(), warehouse.query(answers)
    result = CliRunner().invoke(
        floor_app, ["compact", "--warehouse", str(warehouse.location.sqlite_path)]
    )
    assert result.exit_code == 0, result.output
    files = [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", result.output)]
    assert len(files) == 2 and files[1] < files[0]
    assert warehouse.counts() == counts and warehouse.query(answers) == before
