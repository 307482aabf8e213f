"""The flows as deployments run them: the task pool sized for the worker host that runs them.

Prefect imports this module on the worker (``prefect.yaml`` and ``serve.py`` name
``deployments/entrypoints.py:produce``, ``:floor_report`` and ``:cache_gc``), so the settings
read here are the worker's own: ``FACTORY_TASK_WORKERS``, else 1 on a CPU-only host and 4
with CUDA. Results are persisted in the worker's default store (``FACTORY_STORE``, else under
``FACTORY_HOME``), under ``results/``, where API callers read them back.
"""

from factory.settings import Settings
from flows.maintenance import cache_gc, floor_report
from flows.produce import for_store
from media.devices import default_task_workers

_settings = Settings()
produce = for_store(
    _settings.store_spec,
    _settings.task_workers or default_task_workers(),
    _settings.store_timeouts,
)

__all__ = ["cache_gc", "floor_report", "produce"]
