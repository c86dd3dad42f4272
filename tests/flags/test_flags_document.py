"""Flag files are checked completely: every problem named (source, line, field, expected)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import (
    MAX_VARIANTS,
    FlagConfigError,
    FlagLayer,
    FlagSetting,
    Variant,
    document_of,
    parse_document,
    parse_document_text,
    parse_text_value,
    parse_variant_spec,
)
from novelgen_desktop.flags.registry import REGISTRY

SOURCE = "/data/flags/flags.json"


def problems_of(text: str, source: str = SOURCE) -> list[str]:
    with pytest.raises(FlagConfigError) as caught:
        parse_document_text(text, source)
    error = caught.value
    assert error.source == source
    assert str(error).startswith(f"{source}: {len(error.problems)} problem(s), nothing applied")
    for problem in error.problems:
        assert problem in str(error)
    return error.problems


def only_problem(text: str) -> str:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def doc(flags: Any, **top: Any) -> str:
    return json.dumps({"schema": 1, "flags": flags, **top}, indent=2)


def experiment(*variants: Any, salt: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"variants": list(variants)}
    if salt is not None:
        data["salt"] = salt
    return data


def v(name: Any, weight: Any, value: Any) -> dict[str, Any]:
    return {"name": name, "weight": weight, "value": value}


# --- a good file ---------------------------------------------------------------------------


def test_a_good_file_gives_every_kind_of_setting() -> None:
    text = doc(
        {
            "multi_tab": False,
            "memory_governor": {"value": True, "comment": "keep on"},
            "fresh_chat": experiment(v("control", 50, False), v("fresh", 50, True), salt="s1"),
        },
        comment="hand written",
        updated_at="2026-01-01",
    )
    layer = parse_document_text(text, SOURCE)
    assert layer == {
        "multi_tab": FlagSetting(value=False),
        "memory_governor": FlagSetting(value=True),
        "fresh_chat": FlagSetting(
            variants=(Variant("control", 50.0, False), Variant("fresh", 50.0, True)), salt="s1"
        ),
    }
    assert layer["fresh_chat"].is_experiment
    assert not layer["multi_tab"].is_experiment


def test_an_empty_flags_object_is_an_empty_layer() -> None:
    assert parse_document_text(doc({}), SOURCE) == {}


# --- the file as a whole -------------------------------------------------------------------


def test_invalid_json_names_line_and_column() -> None:
    text = '{\n  "schema": 1,\n  "flags": {\n    "multi_tab": fals\n  }\n}\n'
    problem = only_problem(text)
    assert problem.startswith("line 4, column 18: not valid JSON")
    assert "Expecting value" in problem


def test_trailing_comma_is_invalid_json_with_its_line() -> None:
    text = '{"schema": 1,\n "flags": {"multi_tab": false,}\n}'
    problem = only_problem(text)
    assert problem.startswith("line 2, column ")
    assert "not valid JSON" in problem


def test_a_document_that_is_not_an_object_is_refused() -> None:
    assert only_problem("[1, 2]") == 'expected a JSON object {"schema": 1, "flags": {…}}'
    assert only_problem('"flags"').startswith("expected a JSON object")


def test_wrong_schema_names_line_expected_and_found() -> None:
    text = '{\n  "flags": {},\n  "schema": 2\n}'
    problem = only_problem(text)
    assert problem == ("line 3: schema: expected 1, got 2 (a file for another NovelGen version?)")


def test_missing_schema_is_named() -> None:
    problem = only_problem('{"flags": {}}')
    assert "schema: expected 1, got null" in problem


def test_unknown_top_level_field() -> None:
    problem = only_problem(doc({}, flgas={}))
    assert problem == "unknown field 'flgas' (expected schema, flags)"


def test_flags_not_an_object() -> None:
    problem = only_problem(json.dumps({"schema": 1, "flags": ["multi_tab"]}))
    assert problem == "flags: expected an object of flag name → value"


def test_missing_flags_reports_the_schema_problem_too() -> None:
    problems = problems_of(json.dumps({"schema": 3}))
    assert len(problems) == 2
    assert "schema: expected 1, got 3" in problems[0]
    assert problems[1] == "flags: expected an object of flag name → value"


def test_an_oversized_document_is_refused_before_parsing() -> None:
    text = doc({}, comment="x" * (1 << 20))
    problem = only_problem(text)
    assert problem.startswith("larger than 1,048,576 bytes")


# --- flags ---------------------------------------------------------------------------------


def test_unknown_flag_with_did_you_mean_and_line() -> None:
    text = '{\n  "schema": 1,\n  "flags": {\n    "multi_tabs": false\n  }\n}'
    problem = only_problem(text)
    assert problem == "line 4: flags.multi_tabs: unknown flag (did you mean 'multi_tab'?)"


def test_unknown_flag_without_a_close_match_has_no_suggestion() -> None:
    problem = only_problem(doc({"zzzzzzzz": True}))
    assert problem.endswith("flags.zzzzzzzz: unknown flag")
    assert "did you mean" not in problem


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("false", '"false"'), (0, "0"), (1, "1"), (None, "null"), ([True], "[true]")],
)
def test_wrong_value_type_for_a_bool_flag(raw: Any, shown: str) -> None:
    problem = only_problem(doc({"multi_tab": raw}))
    assert problem == f"line 4: flags.multi_tab: expected true or false, got {shown}"


def test_wrong_type_inside_value_names_the_value_field() -> None:
    problem = only_problem(doc({"memory_governor": {"value": "yes"}}))
    assert problem.endswith('flags.memory_governor.value: expected true or false, got "yes"')


def test_a_setting_with_neither_or_both_value_and_variants() -> None:
    assert only_problem(doc({"multi_tab": {}})).endswith(
        "flags.multi_tab: give either 'value' or 'variants'"
    )
    both = experiment(v("a", 1, True), v("b", 1, False))
    both["value"] = True
    assert only_problem(doc({"fresh_chat": both})).endswith(
        "flags.fresh_chat: give either 'value' or 'variants'"
    )


def test_unknown_field_in_a_setting() -> None:
    problem = only_problem(doc({"multi_tab": {"valeu": True}}))
    assert problem.endswith("flags.multi_tab: unknown field 'valeu' (expected value or variants)")


def test_variants_on_a_global_flag_are_refused() -> None:
    problem = only_problem(doc({"multi_tab": experiment(v("a", 1, True), v("b", 1, False))}))
    assert problem == (
        "line 4: flags.multi_tab.variants: 'multi_tab' is decided once for the whole hub "
        "(unit 'global') and cannot be split into variants"
    )


@pytest.mark.parametrize("name", ["", "Control", "has space", "-lead", "x" * 33, 7, None])
def test_bad_variant_names(name: Any) -> None:
    problem = only_problem(doc({"fresh_chat": experiment(v(name, 1, True), v("b", 1, False))}))
    assert problem.endswith(
        "flags.fresh_chat.variants[0].name: expected a short name like 'control' (a-z, 0-9, _ -)"
    )


def test_good_variant_names_at_the_limits() -> None:
    layer = parse_document_text(
        doc({"fresh_chat": experiment(v("0", 1, True), v("a" + "_-" * 15 + "z", 1, False))}),
        SOURCE,
    )
    assert [x.name for x in layer["fresh_chat"].variants] == ["0", "a" + "_-" * 15 + "z"]


def test_duplicate_variant_names() -> None:
    problem = only_problem(doc({"fresh_chat": experiment(v("same", 1, True), v("same", 1, False))}))
    assert problem.endswith("flags.fresh_chat.variants[1].name: 'same' is used twice")


@pytest.mark.parametrize(
    ("weight", "shown"), [(-1, "-1"), ("50", '"50"'), (True, "true"), (None, "null")]
)
def test_bad_variant_weights(weight: Any, shown: str) -> None:
    problem = only_problem(doc({"fresh_chat": experiment(v("a", weight, True), v("b", 1, False))}))
    expected = f"flags.fresh_chat.variants[0].weight: expected a number ≥ 0, got {shown}"
    assert problem.endswith(expected)


def test_non_finite_weight_is_refused() -> None:
    # json.dumps writes Infinity, which Python's json accepts back.
    text = doc({"fresh_chat": experiment(v("a", float("inf"), True), v("b", 1, False))})
    assert "Infinity" in text
    problem = only_problem(text)
    assert "variants[0].weight: expected a number ≥ 0, got Infinity" in problem


def test_missing_variant_value() -> None:
    problem = only_problem(
        doc({"fresh_chat": experiment({"name": "a", "weight": 1}, v("b", 1, False))})
    )
    assert problem.endswith("flags.fresh_chat.variants[0].value: missing")


def test_wrong_variant_value_type() -> None:
    problem = only_problem(doc({"fresh_chat": experiment(v("a", 1, "on"), v("b", 1, False))}))
    assert problem.endswith('flags.fresh_chat.variants[0].value: expected true or false, got "on"')


def test_variant_item_not_an_object_and_unknown_variant_field() -> None:
    problems = problems_of(
        doc({"fresh_chat": experiment("control", {**v("b", 1, False), "wieght": 2})})
    )
    assert problems[0].endswith(
        'flags.fresh_chat.variants[0]: expected {"name": …, "weight": …, "value": …}'
    )
    assert problems[1].endswith(
        "flags.fresh_chat.variants[1]: unknown field 'wieght' (expected name, weight, value)"
    )


def test_weights_summing_to_zero() -> None:
    problem = only_problem(doc({"fresh_chat": experiment(v("a", 0, True), v("b", 0.0, False))}))
    assert problem.endswith(
        "flags.fresh_chat.variants: the weights add up to 0: no variant could be chosen"
    )


@pytest.mark.parametrize("count", [0, 1, MAX_VARIANTS + 1])
def test_wrong_number_of_variants(count: int) -> None:
    variants = [v(f"v{i}", 1, i % 2 == 0) for i in range(count)]
    problem = only_problem(doc({"fresh_chat": experiment(*variants)}))
    assert problem.endswith("flags.fresh_chat.variants: expected a list of 2–8 variants")


def test_exactly_max_variants_is_fine() -> None:
    variants = [v(f"v{i}", 1, i % 2 == 0) for i in range(MAX_VARIANTS)]
    layer = parse_document_text(doc({"fresh_chat": experiment(*variants)}), SOURCE)
    assert len(layer["fresh_chat"].variants) == MAX_VARIANTS


def test_variants_not_a_list() -> None:
    problem = only_problem(doc({"fresh_chat": {"variants": {"a": 1}}}))
    assert problem.endswith("flags.fresh_chat.variants: expected a list of 2–8 variants")


@pytest.mark.parametrize("salt", ["", "x" * 65, 5])
def test_bad_salt(salt: Any) -> None:
    problem = only_problem(
        doc({"fresh_chat": experiment(v("a", 1, True), v("b", 1, False), salt=salt)})
    )
    assert problem.endswith("flags.fresh_chat.salt: expected a text of 1–64 characters")


def test_every_problem_of_one_file_is_reported_at_once() -> None:
    text = doc(
        {
            "multi_tab": "off",
            "memory_gouvernor": True,
            "selector_updates": experiment(v("a", 1, True), v("b", 1, False)),
            "fresh_chat": experiment(v("Bad", -3, True), {"name": "b", "weight": 1}),
            "chat_strategies": True,
        },
        schema=9,
        extra=1,
    )
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert len(problems) == 8, joined
    assert "unknown field 'extra'" in problems[0]
    assert "schema: expected 1, got 9" in problems[1]
    assert 'flags.multi_tab: expected true or false, got "off"' in joined
    assert "flags.memory_gouvernor: unknown flag (did you mean 'memory_governor'?)" in joined
    assert "flags.selector_updates.variants: 'selector_updates' is decided once" in joined
    assert "flags.fresh_chat.variants[0].name:" in joined
    assert "flags.fresh_chat.variants[0].weight: expected a number ≥ 0, got -3" in joined
    assert "flags.fresh_chat.variants[1].value: missing" in joined
    # each flag's problem carries the line the flag is on
    lines = text.splitlines()
    for problem in problems[2:]:
        line_no = int(problem.split(":", 1)[0].removeprefix("line "))
        flag = problem.split("flags.", 1)[1].split(".", 1)[0].split(":", 1)[0]
        assert f'"{flag}"' in lines[line_no - 1], problem


def test_parse_document_without_text_has_no_line_numbers() -> None:
    with pytest.raises(FlagConfigError) as caught:
        parse_document({"schema": 1, "flags": {"multi_tab": 3}}, "remote")
    assert caught.value.problems == ["flags.multi_tab: expected true or false, got 3"]


def test_flag_config_error_is_a_config_error() -> None:
    assert issubclass(FlagConfigError, ConfigError)


# --- text values (environment, --flag, --variant) -----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on", True),
        ("off", False),
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        (" ON ", True),
        ("False", False),
        ("YES", True),
    ],
)
def test_parse_text_value_bool_words(text: str, expected: bool) -> None:
    assert parse_text_value(REGISTRY["multi_tab"], text) is expected


@pytest.mark.parametrize("text", ["", "enabled", "2", "y", "offf"])
def test_parse_text_value_refuses_other_words(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected on/off \(true/false, 1/0, yes/no\), got"):
        parse_text_value(REGISTRY["multi_tab"], text)


def test_parse_variant_spec_builds_an_experiment() -> None:
    setting = parse_variant_spec(REGISTRY["fresh_chat"], ["control=off:90", "fresh=on:10.5"])
    assert setting == FlagSetting(
        variants=(Variant("control", 90.0, False), Variant("fresh", 10.5, True))
    )


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["control=off", "fresh=on:1"], "expected NAME=VALUE:WEIGHT"),
        (["control:off:1", "fresh=on:1"], "expected NAME=VALUE:WEIGHT"),
        (["control=maybe:1", "fresh=on:1"], "'control=maybe:1': expected on/off"),
        (["control=off:half", "fresh=on:1"], "weight 'half' is not a number"),
        (["control=off:1"], "fresh_chat.variants: expected a list of 2–8 variants"),
        (["a=off:1", "a=on:1"], "fresh_chat.variants[1].name: 'a' is used twice"),
        (["a=off:0", "b=on:0"], "the weights add up to 0"),
        (["a=off:-1", "b=on:1"], "variants[0].weight: expected a number ≥ 0, got -1.0"),
        (["A=off:1", "b=on:1"], "variants[0].name: expected a short name"),
    ],
)
def test_parse_variant_spec_errors(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_variant_spec(REGISTRY["fresh_chat"], specs)
    assert message in str(caught.value)


def test_parse_variant_spec_refuses_a_global_flag() -> None:
    with pytest.raises(ValueError, match="cannot be split into variants"):
        parse_variant_spec(REGISTRY["multi_tab"], ["a=off:1", "b=on:1"])


# --- the file form ------------------------------------------------------------------------


def test_document_of_round_trip() -> None:
    layer: FlagLayer = {
        "multi_tab": FlagSetting(value=False),
        "reference_images": FlagSetting(value=True),
        "fresh_chat": FlagSetting(
            variants=(Variant("control", 1.0, False), Variant("fresh", 3.0, True)), salt="salty"
        ),
        "memory_governor": FlagSetting(variants=(), value=True),
    }
    document = document_of(layer)
    assert document["schema"] == 1
    assert list(document["flags"]) == sorted(layer)
    assert document["flags"]["multi_tab"] is False
    assert document["flags"]["fresh_chat"] == {
        "variants": [
            {"name": "control", "weight": 1.0, "value": False},
            {"name": "fresh", "weight": 3.0, "value": True},
        ],
        "salt": "salty",
    }
    text = json.dumps(document, indent=2)
    assert parse_document_text(text, "round trip") == layer
    assert document_of(parse_document_text(text, "again")) == document


_bool_settings = st.booleans().map(lambda b: FlagSetting(value=b))
_names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)


@st.composite
def _experiments(draw: st.DrawFn) -> FlagSetting:
    names = draw(st.lists(_names, min_size=2, max_size=MAX_VARIANTS, unique=True))
    weights = draw(
        st.lists(
            st.floats(min_value=0, max_value=1000, allow_nan=False),
            min_size=len(names),
            max_size=len(names),
        ).filter(lambda ws: sum(ws) > 0)
    )
    variants = tuple(
        Variant(name, weight, draw(st.booleans()))
        for name, weight in zip(names, weights, strict=True)
    )
    salt = draw(st.none() | st.text(min_size=1, max_size=64))
    return FlagSetting(variants=variants, salt=salt)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "multi_tab": _bool_settings,
            "memory_governor": _bool_settings,
            "selector_updates": _bool_settings,
            "reference_images": _bool_settings | _experiments(),
            "fresh_chat": _bool_settings | _experiments(),
        },
    )
)
def test_document_of_round_trip_property(layer: FlagLayer) -> None:
    text = json.dumps(document_of(layer))
    assert parse_document_text(text, "property") == layer
