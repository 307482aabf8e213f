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


# Issue 10: bad input is refused quickly, with short messages.

BILLION_LAUGHS = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
id: bomb
segments: *g
"""


@pytest.mark.timeout(20)
def test_yaml_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(BadInput) as caught:
        load_order(path)
    message = str(caught.value)
    assert "alias *a at line 2" in message
    assert "not allowed" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    "text",
    [
        "id: x\nsegments: [{prompt: &p p, duration_s: 1}, {prompt: *p, duration_s: 1}]\n",
        "base: &base {prompt: p, duration_s: 1}\nid: x\nsegments: [{<<: *base, seed: 2}]\n",
    ],
)
def test_any_alias_or_merge_key_is_refused(tmp_path, text):
    path = tmp_path / "alias.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match="YAML aliases and merge keys"):
        load_order(path)


def test_order_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    from factory.orders import MAX_ORDER_BYTES

    path = tmp_path / "huge.yaml"
    path.write_text("id: x\nsegments: [{prompt: p, duration_s: 1}]\n" + "#" * MAX_ORDER_BYTES)
    with pytest.raises(BadInput, match=r"larger than 1024 KiB"):
        load_order(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deeply_nested_order_is_refused(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BadInput) as caught:
        load_order(path)
    assert len(str(caught.value)) < 800


def test_501_segments_give_a_short_error():
    data = {"id": "o1", "segments": [{"prompt": "p" * 2000, "duration_s": 1}] * 501}
    with pytest.raises(BadInput) as caught:
        parse_order(data)
    message = str(caught.value)
    assert "segments: List should have at most 500 items" in message
    assert len(message) < 400


def test_a_huge_value_is_quoted_only_as_an_excerpt():
    data = _order()
    data["composite"] = {"background_color": "#" * 100_000, "captions": ["x" * 100_000]}
    data["x" * 100_000] = 1
    with pytest.raises(BadInput) as caught:
        parse_order(data)
    lines = str(caught.value).splitlines()
    assert any("composite.background_color" in line for line in lines)
    assert all(len(line) <= 302 for line in lines)


def test_many_problems_are_listed_up_to_a_limit():
    data = {"id": "o1", "segments": [{"prompt": "", "duration_s": 0}] * 100}
    with pytest.raises(BadInput) as caught:
        parse_order(data)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 + 20 + 1
    assert lines[-1].strip() == "… and 180 more problems"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("segment", "fps"),
        ("segment", "duration_s"),
        ("segment", "seed"),
        ("segment", "width"),
        ("segment", "steps"),
        ("segment", "guidance"),
        ("composite", "caption_size"),
        ("composite", "logo_scale"),
        ("encode", "crf"),
    ],
)
def test_booleans_are_not_numbers(where, field):
    data = _order()
    if where == "segment":
        data["segments"][0][field] = True
        path = f"segments.0.{field}"
    else:
        data[where] = {field: True}
        path = f"{where}.{field}"
    with pytest.raises(BadInput) as caught:
        parse_order(data)
    assert f"{path}: must be a number, not true or false (got True)" in str(caught.value)


def test_numbers_are_not_booleans():
    data = _order()
    data["encode"] = {"fragmented": 1}
    with pytest.raises(BadInput, match=r"encode\.fragmented: Input should be a valid boolean"):
        parse_order(data)


def test_numbers_still_load_as_before():
    order = parse_order(_order(fps=24, duration_s=2, seed=7, guidance=0, steps=4))
    assert (order.segments[0].fps, order.segments[0].duration_s) == (24, 2.0)
    assert order.segments[0].guidance == 0.0


def test_takes_walk_seeds_then_the_escalation_ladder():
    order = parse_order(
        {
            "id": "ladder",
            "quality": {"attempts": 2},
            "segments": [{"prompt": "a", "duration_s": 1, "seed": 7, "escalation": ["tiny-plus"]}],
        }
    )
    segment = order.segments[0]
    assert order.attempts(0) == 4
    takes = [segment.take(attempt, order.quality.attempts) for attempt in range(1, 5)]
    assert [(t.model, t.seed) for t in takes] == [
        ("tiny", 7),
        ("tiny", 8),
        ("tiny-plus", 7),
        ("tiny-plus", 8),
    ]
    with pytest.raises(ValueError, match=r"outside 1\.\.4"):
        segment.take(5, order.quality.attempts)


def test_a_seed_at_the_top_of_its_range_wraps_on_the_next_take():
    segment = parse_order(
        {"id": "wrap", "segments": [{"prompt": "a", "duration_s": 1, "seed": 2**63 - 1}]}
    ).segments[0]
    assert segment.take(2, 2).seed == 0


def test_a_ladder_that_names_a_model_twice_is_refused():
    with pytest.raises(BadInput, match="escalation: names a model twice"):
        parse_order(_order(escalation=["tiny-plus", "tiny-plus"]))


@pytest.mark.parametrize("attempts", [0, 11, True])
def test_attempts_out_of_range_are_refused(attempts):
    with pytest.raises(BadInput, match=r"quality\.attempts"):
        parse_order({**_order(), "quality": {"attempts": attempts}})
