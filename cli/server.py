"""`factory server start|stop|status`: the factory's own Prefect server on 127.0.0.1, and the
warm starter beside it (cli.warm) that serves `factory run` without paying its imports.

`factory run` starts both on first use, so these are for looking at them, starting them
ahead of time, and stopping them. Prefect is not imported here: both run in their own
processes.
"""

import typer
from rich.console import Console
from rich.table import Table

from cli import local_server, warm
from cli.common import JsonOption
from factory.settings import Settings

server_app = typer.Typer(
    no_args_is_help=True,
    help="The factory's local Prefect server (UI and API), which `factory run` starts on "
    "first use and reuses",
)
out = Console()
# How long `server start` waits for the warm starter's imports (3-5 s on 2 quiet cores).
WARM_WAIT_S = 60.0
console = Console(stderr=True)


def _print(current: local_server.ServerStatus) -> None:
    state = current.state
    if state is None:
        out.print("no factory server recorded (`factory server start`, or any `factory run`)")
        return
    health = "ok" if current.healthy else "not answering" if current.running else "-"
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    state_text = "running" if current.running else f"not running (stale pid {state.pid})"
    table.add_row("state", state_text)
    table.add_row("UI", current.ui_url or "-")
    table.add_row("API", current.api_url or "-")
    table.add_row("pid", str(state.pid))
    table.add_row("health", health)
    table.add_row("started", f"{state.started:%Y-%m-%d %H:%M:%S} UTC")
    table.add_row("database", str(state.database))
    table.add_row("log", str(state.log))
    starter = current.warm_starter
    if starter is None:
        table.add_row("warm starter", "not running (commands run in their own process)")
    else:
        serves = (
            "serves `factory run` from this environment"
            if starter.serves(warm.user_environment())
            else "started from another environment: serves none of this one's commands "
            "(`factory server start` here restarts it)"
        )
        table.add_row("warm starter", f"pid {starter.pid}, {serves}")
        table.add_row("warm socket", str(starter.socket))
        table.add_row("warm log", str(starter.log))
    out.print(table)


@server_app.command()
def start(as_json: JsonOption = False) -> None:
    """Start the server and the warm starter unless they run already, and wait until they
    answer (FACTORY_WARM_START=off: no warm starter)."""
    settings = Settings()
    state, started = local_server.ensure_running(
        settings, warm_wait_s=WARM_WAIT_S, warm_for_this_environment=True
    )
    if not as_json:
        console.print(
            f"{'started' if started else 'already running:'} factory server pid {state.pid}; "
            f"Prefect UI {state.ui_url}"
        )
    _report(local_server.status(settings), as_json)


@server_app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the server's URL, PID and health. Exit 1 when it is not running or not healthy."""
    current = local_server.status(Settings())
    _report(current, as_json)
    if not current.healthy:
        raise typer.Exit(1)


@server_app.command()
def stop() -> None:
    """Stop the server and the warm starter: SIGTERM to their PIDs, then wait for them to exit
    (runs keep their history; commands the warm starter is serving finish)."""
    settings = Settings()
    stopped = local_server.stop(settings)
    if stopped is None:
        console.print("no factory server running")
    else:
        console.print(f"stopped factory server pid {stopped.pid} ({stopped.ui_url})")
    starter = warm.stop(settings.server_dir)
    if starter is not None:
        console.print(f"stopped the warm starter pid {starter}")


def _report(current: local_server.ServerStatus, as_json: bool) -> None:
    if as_json:
        out.print_json(current.model_dump_json())
    else:
        _print(current)
