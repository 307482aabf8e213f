"""Lake upkeep: many small ingests leave many small Parquet files and snapshots.

DuckLake's own maintenance calls do the work: inlined rows flushed to Parquet, adjacent
small files merged, old snapshots expired, and the files nothing references any more
deleted once no reader can still be scanning them.
"""

import duckdb


def data_files(con: duckdb.DuckDBPyConnection) -> int:
    """Parquet data files the current snapshot of the lake in use reads."""
    lake = con.execute("select current_database()").fetchone()[0]
    tables = con.execute(
        "select table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    return sum(
        con.execute(f"select count(*) from ducklake_list_files('{lake}', '{table}')").fetchone()[0]
        for (table,) in tables
    )


def compact(con: duckdb.DuckDBPyConnection, keep_snapshots_days: float) -> dict[str, int]:
    """Flush, merge, expire and clean up; the data files before and after."""
    lake = con.execute("select current_database()").fetchone()[0]
    before = data_files(con)
    con.execute(f"call ducklake_flush_inlined_data('{lake}')")
    con.execute(f"call ducklake_merge_adjacent_files('{lake}')")
    seconds = int(keep_snapshots_days * 86400)
    con.execute(
        f"call ducklake_expire_snapshots('{lake}', older_than => now() - to_seconds({seconds}))"
    )
    con.execute(f"call ducklake_cleanup_old_files('{lake}', older_than => now() - interval 1 day)")
    return {"data_files_before": before, "data_files_after": data_files(con)}
