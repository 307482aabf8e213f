"""Serve the produce flow as a deployment: runs it on this host when the UI or API asks.

    prefect server start --host 127.0.0.1 --port 4200    # in another terminal
    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py

Then trigger a run from the UI (Deployments → produce/produce-local → Run), or
through the REST API (see README.md).
"""

# Run as a script, so the entry points beside it import by their module name.
from entrypoints import produce

from flows.crashed_runs import mark_dead_runs_crashed

if __name__ == "__main__":
    # Runs of this host killed without a word (SIGKILL, OOM) would stay RUNNING forever.
    for run_id in mark_dead_runs_crashed():
        print(f"marked flow run {run_id} Crashed: its process is gone")
    # No schedule here on purpose: re-serving with `schedules` would replace the
    # ones operators add in the UI.
    produce.serve(
        name="produce-local",
        tags=["asset-factory"],
        description="Turn an order into a signed H.264 deliverable",
        limit=1,
    )
