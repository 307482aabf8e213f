"""`factory qc`: measure any MP4 and judge it with the segment or deliverable suite.

Great Expectations loads only inside the command (it takes seconds to import), so the
rest of the command line never pays for it.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.common import JsonOption, StoreOption, open_store_option
from factory.errors import BadInput, ObjectNotFound
from factory.settings import Settings

out = Console()
console = Console(stderr=True)

_TARGET_OPTIONS = ("--width", "--height", "--fps", "--duration")


def _read_media(target: str, store_spec: str | None) -> tuple[str, bytes]:
    """(what to call it, its bytes): a file, or an asset digest read from the store."""
    path = Path(target)
    if path.is_file():
        return str(path), path.read_bytes()
    digest = target.removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadInput(f"{target} is neither a file nor an asset digest (sha256:<64 hex>)")
    from factory.assets import AssetRef
    from storage.assets import asset_key, get_asset

    store = open_store_option(store_spec, Settings())
    key = asset_key(digest)
    info = store.head(key)
    if info is None:
        raise ObjectNotFound(f"asset sha256:{digest} is not in the store {store.url}")
    ref = AssetRef(
        digest=digest, uri=store.uri(key), key=key, media_type="video/mp4", size=info.size
    )
    return f"sha256:{digest}", get_asset(store, ref)


def _segment_target(data: bytes, width, height, fps, duration):
    """The target the options give; what they leave out is taken from the file itself."""
    from quality.judge import SegmentTarget
    from quality.metrics import deliverable_metrics

    own = deliverable_metrics(data)  # demuxing only: size, rate and length
    fps = fps if fps is not None else own.fps
    duration = duration if duration is not None else own.duration_s
    return SegmentTarget(
        width=width if width is not None else own.width,
        height=height if height is not None else own.height,
        fps=fps,
        frames=max(1, round(duration * fps)),
        duration_s=duration,
    )


def qc(
    target: Annotated[
        str,
        typer.Argument(metavar="FILE_OR_DIGEST", help="An MP4 file, or sha256:DIGEST in the store"),
    ],
    store: StoreOption = None,
    width: Annotated[int | None, typer.Option("--width", help="Expected width", min=1)] = None,
    height: Annotated[int | None, typer.Option("--height", help="Expected height", min=1)] = None,
    fps: Annotated[
        float | None, typer.Option("--fps", help="Expected frame rate", min=0.001)
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Expected length in seconds", min=0.001)
    ] = None,
    order_file: Annotated[
        Path | None,
        typer.Option(
            "--order",
            help="Judge against this order: the deliverable suite, or with --segment N that "
            "segment's target",
        ),
    ] = None,
    segment: Annotated[
        int | None,
        typer.Option("--segment", help="With --order: judge FILE as this segment (from 0)", min=0),
    ] = None,
    thresholds: Annotated[
        Path | None,
        typer.Option(
            "--thresholds", help="Thresholds file (TOML). Default: quality/thresholds.toml"
        ),
    ] = None,
    docs: Annotated[
        Path | None,
        typer.Option("--docs", help="Also write Great Expectations Data Docs into this folder"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure an MP4 and judge it with the segment suite, or the deliverable suite.

    Without a target the file is judged against its own size, frame rate and length, so
    only the picture checks (black, frozen, flicker, luma, bitrate) can fail. --order
    without --segment judges a deliverable: its length and segments against the order.
    Exit 0 when the verdict passes, 1 when it fails, 2 on bad input.
    """
    values = (width, height, fps, duration)
    given = [option for option, value in zip(_TARGET_OPTIONS, values, strict=True) if value]
    if order_file is not None and given:
        raise BadInput(
            f"--order and {', '.join(given)} exclude each other: the order is the target"
        )
    if segment is not None and order_file is None:
        raise BadInput("--segment needs --order: it names a segment of that order")
    name, data = _read_media(target, store)
    from quality.judge import Judge
    from quality.targets import segment_target

    if order_file is not None:
        from factory.orders import load_order

        order = load_order(order_file)
        if segment is None:
            source = f"order {order.id}: the whole deliverable ({len(order.segments)} segments)"
            judge = Judge(thresholds)
            verdict = judge.judge_deliverable(data, order)
        else:
            goal = segment_target(order, segment)
            source = f"order {order.id}: segment {segment}"
            judge = Judge(thresholds)
            verdict = judge.judge_segment(data, goal)
    else:
        goal = _segment_target(data, width, height, fps, duration)
        left = [option.removeprefix("--") for option in _TARGET_OPTIONS if option not in given]
        source = "the options given"
        if left:
            source = (
                f"{'the options given and ' if given else ''}the file's own {', '.join(left)}: "
                "checks against those pass trivially (give --width, --height, --fps, "
                "--duration or --order)"
            )
        judge = Judge(thresholds)
        verdict = judge.judge_segment(data, goal)
    index = None
    if docs is not None:
        from quality.data_docs import build_data_docs

        index = build_data_docs(judge.validations, docs)
    if as_json:
        out.print_json(
            data={
                "file": name,
                "target": source,
                "verdict": verdict.model_dump(mode="json"),
                "data_docs": str(index) if index else None,
            }
        )
    else:
        rules = {column: bounds for _, column, bounds in judge.suites.expectations[verdict.suite]}
        _print(name, source, verdict, rules, index)
    if not verdict.passed:
        raise typer.Exit(1)


def _print(name: str, source: str, verdict, rules: dict[str, dict], index: Path | None) -> None:
    failed = {failure.metric for failure in verdict.failures}
    table = Table(box=None, padding=(0, 2))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("expected")
    metrics = verdict.metrics
    for key, value in metrics.items():
        if key.startswith("target_"):
            continue
        shown = Text(_format(value), style="bold red" if key in failed else "")
        expected = _expected(rules[key], metrics) if key in rules else ""
        if not expected and f"target_{key}" in metrics:
            expected = f"≈ {_format(metrics[f'target_{key}'])}"
        table.add_row(key, shown, expected)
    out.print(Text.assemble(("file    ", "bold"), name), soft_wrap=True)
    out.print(Text.assemble(("target  ", "bold"), source), soft_wrap=True)
    out.print(table)
    mark = ("PASSED", "bold green") if verdict.passed else ("FAILED", "bold red")
    out.print(
        Text.assemble(mark, f"  {verdict.suite} suite, thresholds version {verdict.suite_version}")
    )
    for failure in verdict.failures:
        out.print(
            Text.assemble(
                ("  ✗ ", "red"),
                (failure.metric or "table", "bold"),
                f" {_format(failure.observed)}, expected {_expected(failure.expected, metrics)}",
                (f"  ({failure.expectation})", "dim"),
            ),
            soft_wrap=True,
        )
    if index is not None:
        out.print(Text.assemble(("data docs ", "bold"), str(index)), soft_wrap=True)


def _expected(bounds: dict, metrics: dict) -> str:
    """An expectation's bounds as a reader would write them: = 60, ≤ 0.1, 0.002 … 4."""
    if "equal_to" in bounds:
        value = bounds["value"] if "value" in bounds else metrics.get(bounds["equal_to"])
        return f"= {_format(value)}"
    low, high = bounds.get("min_value"), bounds.get("max_value")
    if low is not None and high is not None:
        return f"{_format(low)} … {_format(high)}"
    if high is not None:
        return f"≤ {_format(high)}"
    if low is not None:
        return f"≥ {_format(low)}"
    if "value_set" in bounds:
        return "in " + ", ".join(_format(value) for value in bounds["value_set"])
    return ""


def _format(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "-"}[value]
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)
