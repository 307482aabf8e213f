"""The flows as deployments run them: the task pool sized for the worker host that runs them.

Prefect imports this module on the worker (``prefect.yaml`` and ``serve.py`` name
``deployments/entrypoints.py:produce``), so the settings read here are the worker's
own: ``FACTORY_TASK_WORKERS``, else 1 on a CPU-only host and 4 with CUDA.
"""

from prefect.task_runners import ThreadPoolTaskRunner

from factory.settings import Settings
from flows.produce import produce as produce_flow
from media.pipelines import default_task_workers

produce = produce_flow.with_options(
    task_runner=ThreadPoolTaskRunner(max_workers=Settings().task_workers or default_task_workers())
)
