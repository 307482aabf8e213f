import json
from pathlib import Path

import pytest

from factory.errors import BadInput
from factory.orders import load_order, parse_order

EXAMPLES = Path(__file__).parent.parent / "examples"


def _order(**segment) -> dict:
    return {"id": "o1", "segments": [{"prompt": "p", "duration_s": 1, **segment}]}


def test_demo_order_is_one_minute_of_twelve_segments():
    order = load_order(EXAMPLES / "demo.yaml")
    assert len(order.segments) == 12
    assert order.duration_s == pytest.approx(60.0)
    assert order.segments[0].frame_count == 60
    assert Path(order.composite.logo).is_file()


def test_json_and_yaml_orders_load_alike(tmp_path):
    data = _order(seed=3)
    (tmp_path / "o.json").write_text(json.dumps(data))
    assert load_order(tmp_path / "o.json").segments[0].seed == 3


@pytest.mark.parametrize(
    ("segment", "field", "fragment"),
    [
        ({"duration_s": 0}, "segments.0.duration_s", "greater than 0"),
        ({"duration_s": 61}, "segments.0.duration_s", "less than or equal to 60"),
        ({"fps": 0}, "segments.0.fps", "greater than or equal to 1"),
        ({"fps": 61}, "segments.0.fps", "less than or equal to 60"),
        ({"width": 641}, "segments.0.width", "must be even"),
        ({"height": 4000}, "segments.0.height", "less than or equal to 2160"),
        ({"steps": 0}, "segments.0.steps", "greater than or equal to 1"),
        ({"colour": "red"}, "segments.0.colour", "Extra inputs"),
    ],
)
def test_invalid_segment_fields_name_field_value_and_range(segment, field, fragment):
    with pytest.raises(BadInput) as caught:
        parse_order(_order(**segment))
    message = str(caught.value)
    assert field in message
    assert fragment in message
    assert f"(got {next(iter(segment.values()))!r})" in message


def test_segments_must_share_size_and_fps():
    data = _order()
    data["segments"].append({"prompt": "q", "duration_s": 1, "fps": 24})
    with pytest.raises(BadInput, match=r"segments\.1\.fps is 24 but segment 0 has 12"):
        parse_order(data)


def test_caption_count_must_match_segments():
    data = _order()
    data["composite"] = {"captions": ["a", "b"]}
    with pytest.raises(BadInput, match="2 entries for 1 segments"):
        parse_order(data)


def test_bad_colour_and_preset_are_named():
    data = _order()
    data["composite"] = {"background_color": "blue"}
    data["encode"] = {"preset": "warp"}
    with pytest.raises(BadInput) as caught:
        parse_order(data)
    assert "composite.background_color" in str(caught.value)
    assert "encode.preset" in str(caught.value)
    assert "'warp'" in str(caught.value)


def test_corrupt_order_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(BadInput, match=r"broken\.yaml is not valid yaml"):
        load_order(path)


def test_order_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(BadInput, match="must hold a mapping"):
        load_order(path)


def test_missing_order_file(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_order(tmp_path / "nope.yaml")


def test_relative_images_resolve_beside_the_order_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "o.yaml"
    path.write_text("id: x\nsegments: [{prompt: p, duration_s: 1}]\ncomposite: {logo: l.png}\n")
    assert load_order(path).composite.logo == str(tmp_path / "sub" / "l.png")
