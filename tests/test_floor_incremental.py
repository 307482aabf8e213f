"""What ingest keeps beside the lake's raw tables: the materialised models, kept current
order by order, and the SQLite lineage index, and both agree with what they stand for
(the models' SQL over everything; the store walk), however the objects arrive."""

import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from bench.floor_books import write_run
from factory.errors import IntegrityError
from storage.ancestry import ancestry as store_ancestry
from storage.local import LocalStore
from storage.trust import load_trusted_keys, local_anchor
from storage.warehouse import Warehouse
from storage.warehouse import lineage as lake_lineage
from storage.warehouse.lineage_index import COLUMNS
from storage.warehouse.models import MATERIALISED, MODELS
from storage.warehouse.schema import read_sql
from tests.test_cli import run_cli
from tests.test_floor import (
    BUDGET,
    PRICES,
    digest_of,
    populate,
    write_floor,
    write_records,
    write_redeliveries,
)

ROOT = Path(__file__).parent.parent


def redelivered(root: Path) -> tuple[LocalStore, Path]:
    """The warehouse tests' store with day two's re-deliveries: its store and keys."""
    store = LocalStore(root / "store")
    populate(store, root / "keys")
    write_redeliveries(store)
    return store, root / "keys"


def differences(warehouse: Warehouse) -> dict[str, int]:
    """Per materialised model: rows that differ from its SQL computed over everything."""
    found = {}
    with warehouse.connect() as con:
        for model in MODELS:
            name = model.split("/")[1]
            if name in MATERIALISED:
                con.execute(f"create or replace temp table whole as {read_sql(model)}")
                found[name] = con.execute(
                    f"select count(*) from ((from {name} except all from temp.whole) "
                    f"union all (from temp.whole except all from {name}))"
                ).fetchone()[0]
    return found


def marts(warehouse: Warehouse) -> dict[str, list[str]]:
    """Every row of the marts over the models, floats to 9 places (sums in another order
    differ in the last bits)."""

    def row(values: tuple) -> str:
        return repr(tuple(round(v, 9) if isinstance(v, float) else v for v in values))

    with warehouse.connect() as con:
        return {
            name: sorted(map(row, con.execute(f"select * from {name}").fetchall()))
            for name in ("yield", "cost_per_delivered_minute", "royalties", "cache_savings")
        }


def test_materialised_models_follow_one_object_at_a_time(tmp_path):
    # One object per batch: each order's events come in several batches, and lineage
    # records after the deliveries they explain (a late record changes an earlier
    # delivery's attribution); the models must equal their SQL after each batch.
    store, keys_dir = redelivered(tmp_path)
    anchor = local_anchor(keys_dir)
    stepwise = Warehouse(tmp_path / "stepwise.sqlite", price_card=PRICES, latency_budget=BUDGET)
    seen = []

    def check(phase: str, done: int, total: int) -> None:
        if phase == "ingest" and done:
            seen.append(differences(stepwise))

    stepwise.ingest(store, anchor, batch_objects=1, progress=check)
    assert len(seen) > 15 and all(set(each.values()) == {0} for each in seen)
    whole = Warehouse(tmp_path / "whole.sqlite", price_card=PRICES, latency_budget=BUDGET)
    whole.ingest(store, anchor)
    assert marts(stepwise) == marts(whole)


def test_lineage_before_the_events_and_a_rebuild(tmp_path):
    # Records first, the floor's events a second ingest later; then the tables rebuilt
    # whole (what a change to a model's SQL does) give the same rows.
    store = LocalStore(tmp_path / "store")
    write_records(store, tmp_path / "keys")
    anchor = local_anchor(tmp_path / "keys")
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.ingest(store, anchor)
    write_floor(store)
    write_redeliveries(store)
    warehouse.ingest(store, anchor)
    assert set(differences(warehouse).values()) == {0}
    before = marts(warehouse)
    warehouse.rebuild_models()
    assert marts(warehouse) == before


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Path, Warehouse]:
    root = tmp_path_factory.mktemp("indexed")
    store, keys_dir = redelivered(root)
    warehouse = Warehouse(root / "floor.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.ingest(store, local_anchor(keys_dir))
    return store, keys_dir, warehouse


def test_the_index_agrees_with_the_store_walk_and_the_lake(indexed):
    store, keys_dir, warehouse = indexed
    index = warehouse.lineage_index
    assert index is not None and index.path.name == "floor.lineage.sqlite"
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    with warehouse.connect() as con:
        digests = [d for (d,) in con.execute("select asset_digest from raw_lineage").fetchall()]
        assert len(digests) == index.records() == 7
        for digest in digests:
            from_index = index.ancestry(digest)
            assert from_index == store_ancestry(store, trusted, digest)
            assert from_index == lake_lineage.ancestry(con, digest, "lake")
            assert index.ancestry_edges(digest) == lake_lineage.ancestry_edges(con, digest)
            row, lake_row = index.lookup(digest), lake_lineage.lookup(con, digest)
            for column in ("training_provenance", "royalty_routing", "parameters"):
                assert json.loads(row.pop(column) or "null") == json.loads(
                    lake_row.pop(column) or "null"
                )
            assert row == lake_row
    # The forged record was never loaded: absent from the index, as from the lake.
    assert warehouse.lookup(digest_of("DB")) is None
    with pytest.raises(IntegrityError, match="no verified record for its own record"):
        warehouse.ancestry(digest_of("DB"))
    assert sorted(COLUMNS) == sorted(warehouse.query("select * from raw_lineage limit 0")[0]), (
        "the index holds every column of raw_lineage"
    )


def test_a_lost_index_is_rebuilt_by_the_next_ingest(tmp_path):
    store, keys_dir = redelivered(tmp_path)
    anchor = local_anchor(keys_dir)
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.ingest(store, anchor)
    index = warehouse.lineage_index
    expected = index.ancestry(digest_of("D"))
    with index.reader() as con:
        written = con.execute("select * from lineage order by asset_digest").fetchall()
    for path in index.path.parent.glob(f"{index.path.name}*"):
        path.unlink()
    # Without an index the warehouse answers from the lake.
    assert warehouse.ancestry(digest_of("D")) == expected
    report = warehouse.ingest(store, anchor)
    assert report.added["raw_lineage"] == 0
    assert index.records() == 7 and index.ancestry(digest_of("D")) == expected
    # Copied from the lake, the rows read exactly as ingest wrote them.
    with index.reader() as con:
        assert con.execute("select * from lineage order by asset_digest").fetchall() == written


def test_a_reader_during_an_ingest_sees_whole_records_or_none(tmp_path):
    # Ingest one object per batch while a reader asks for the deliverable's ancestry in
    # a loop: it is absent, or incomplete (a parent not in yet), or the whole answer;
    # never a locked database or another error.
    store, keys_dir = redelivered(tmp_path)
    anchor = local_anchor(keys_dir)
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.refresh_models()
    expected = store_ancestry(store, load_trusted_keys(store, anchor), digest_of("D"))
    index = warehouse.lineage_index
    outcomes: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() or not outcomes or outcomes[-1] != "whole":
            try:
                if not index.exists():
                    outcomes.append("no index")
                    continue
                with index.reader() as con:
                    outcomes.append(
                        "whole" if index.ancestry(digest_of("D"), con) == expected else "wrong"
                    )
            except IntegrityError:
                outcomes.append("absent")
            except BaseException as error:
                errors.append(error)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        warehouse.ingest(store, anchor, batch_objects=1)
    finally:
        done.set()
        reader.join(timeout=60)
    assert errors == []
    assert "wrong" not in outcomes and outcomes[-1] == "whole"
    assert "absent" in outcomes


def test_cli_lineage_answers_from_the_index_and_says_so(indexed, tmp_path, monkeypatch, capsys):
    store, keys_dir, warehouse = indexed
    home = tmp_path / "home"
    monkeypatch.setenv("FACTORY_HOME", str(home))
    monkeypatch.setenv("FACTORY_WAREHOUSE_CATALOG", f"sqlite:{warehouse.location.sqlite_path}")
    monkeypatch.setenv("FACTORY_STORE", str(keys_dir.parent / "store"))
    monkeypatch.setenv("COLUMNS", "250")
    code, text = run_cli(monkeypatch, capsys, "lineage", f"sha256:{digest_of('D')}", "--json")
    assert code == 0, text
    answer = json.loads(text)
    assert "lineage index" in answer.pop("source")
    trusted = load_trusted_keys(store, local_anchor(keys_dir))
    assert answer == store_ancestry(store, trusted, digest_of("D")).model_dump(mode="json")
    code, text = run_cli(monkeypatch, capsys, "lineage", f"sha256:{digest_of('D')}")
    assert code == 0 and "From the floor warehouse's lineage index" in text


def test_the_readmes_index_query_runs_as_shown(indexed):
    # storage/sql/README.md's queries of the lineage index (```sqlite blocks, each with
    # its output as `sqlite3 -header` prints it) against the index of the fixture.
    _, _, warehouse = indexed
    text = (ROOT / "storage" / "sql" / "README.md").read_text()
    examples = re.findall(r"```sqlite\n(.*?)```\n```text\n(.*?)```", text, re.S)
    assert examples
    with sqlite3.connect(f"file:{warehouse.lineage_index.path}?mode=ro", uri=True) as con:
        for query, shown in examples:
            cursor = con.execute(query)
            lines = ["|".join(d[0] for d in cursor.description)] + [
                "|".join("" if v is None else str(v) for v in row) for row in cursor.fetchall()
            ]
            assert "\n".join(lines) == shown.strip(), query
    con.close()


def test_records_that_verify_later_are_loaded_indexed_and_no_longer_rejected(tmp_path):
    # The signing key reaches the store after the records: the first ingest rejects
    # them, the next (key published) loads them, forgets the rejections, indexes them
    # and attributes the delivery that came in before them.
    write_run(tmp_path / "store", tmp_path / "keys", 0)
    published = tmp_path / "store" / "keys"
    published.rename(tmp_path / "keys-aside")
    store, anchor = LocalStore(tmp_path / "store"), local_anchor(tmp_path / "keys")
    warehouse = Warehouse(tmp_path / "w.sqlite", price_card=PRICES, latency_budget=BUDGET)
    first = warehouse.ingest(store, anchor)
    assert len(first.rejected) == 13 and warehouse.counts()["rejected_objects"] == 13
    assert warehouse.query("select count(*) from royalties where holder is null")[1] == [(1,)]
    (tmp_path / "keys-aside").rename(published)
    second = warehouse.ingest(store, anchor)
    assert second.rejected == [] and second.added["raw_lineage"] == 13
    assert warehouse.counts()["rejected_objects"] == 0
    assert warehouse.lineage_index.records() == 13
    assert set(differences(warehouse).values()) == {0}
    assert warehouse.query("select count(*) from royalties where holder is null")[1] == [(0,)]
