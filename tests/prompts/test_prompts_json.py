from __future__ import annotations

import json
from pathlib import Path

from prompts_testutil import errors, load, parse, texts, warnings


def test_array_of_strings_and_objects() -> None:
    text = json.dumps(
        [
            "a lighthouse",
            {
                "prompt": "a storm",
                "page": 2,
                "panel": 1,
                "images": 3,
                "characters": ["Maren", "Isak"],
                "priority": -3,
                "style": "ink",
                "chapter": 4,
            },
        ]
    )
    result = parse(text, "json")
    assert errors(result) == []
    first, second = result.specs
    assert first.text == "a lighthouse"
    assert (second.chapter, second.page, second.panel, second.images) == ("4", 2, 1, 3)
    assert (second.characters, second.priority, second.style) == (("Maren", "Isak"), -3, "ink")


def test_prompts_object_with_defaults_and_job_metadata() -> None:
    text = """{
  "title": "The Lighthouse Keeper",
  "chapter": "2",
  "style": "ink and wash",
  "characters": ["Maren"],
  "prompts": [
    "uses every default",
    {"prompt": "overrides", "chapter": "3", "characters": "Isak", "style": "pencil"}
  ]
}"""
    result = parse(text, "json", "book.json")
    assert errors(result) == []
    default, override = result.specs
    assert (default.chapter, default.style, default.characters) == ("2", "ink and wash", ("Maren",))
    assert (override.chapter, override.style, override.characters) == ("3", "pencil", ("Isak",))
    assert result.job_metadata == {"book.json": {"title": "The Lighthouse Keeper"}}


def test_invalid_default_is_reported_at_its_line_once() -> None:
    text = '{\n  "priority": "urgent",\n  "prompts": ["a", "b"]\n}'
    result = parse(text, "json", "b.json")
    assert errors(result) == ["b.json:2: field 'priority': expected an integer, got 'urgent'"]
    assert texts(result) == ["a", "b"]


def test_syntax_error_reports_line_and_column() -> None:
    result = parse('[\n  {"prompt": "a"},\n  {"prompt": "b" "page": 2}\n]', "json", "bad.json")
    assert errors(result) == ["bad.json:3:18: invalid JSON: Expecting ',' delimiter"]


def test_trailing_comma_is_a_syntax_error() -> None:
    result = parse('["a",\n "b",\n]', "json", "t.json")
    assert [(issue.line, issue.column) for issue in result.errors] == [(3, 1)]


def test_element_errors_point_at_the_element_line() -> None:
    elements = [
        {"prompt": "tricky ] [ } { , strings", "metadata": {"nested": [1, {"x": "]"}]}},
        {"prompt": "multi\nline escaped", "page": "seven"},
        "plain",
        7,
        {"prompt": "", "images": 0},
        {"text": "alias ok"},
        {"nothing": "here"},
        None,
    ]
    text = json.dumps(elements, indent=2)
    starts = []
    line = 2
    for element in elements:
        starts.append(line)
        line += json.dumps(element, indent=2).count("\n") + 1
    result = parse(text, "json", "e.json")
    assert texts(result) == ["tricky ] [ } { , strings", "plain", "alias ok"]
    assert [spec.source.line for spec in result.specs] == [starts[0], starts[2], starts[5]]
    assert errors(result) == [
        f"e.json:{starts[1]}: field 'page': expected a positive integer, got 'seven'",
        f"e.json:{starts[3]}: element 4 must be an object or a text, got 7",
        f"e.json:{starts[4]}: field 'prompt': prompt is empty",
        f"e.json:{starts[4]}: field 'images': expected an integer from 1 to 8, got 0",
        f"e.json:{starts[6]}: element 7 has no \"prompt\" key (keys: 'nothing')",
        f"e.json:{starts[7]}: element 8 must be an object or a text, got null",
    ]


def test_elements_on_one_line_share_it() -> None:
    result = parse('\n\n["a", {"prompt": "b", "page": 0}]', "json", "x.json")
    assert errors(result) == ["x.json:3: field 'page': expected a positive integer, got 0"]


def test_wrong_top_level_shapes() -> None:
    assert errors(parse('"just a string"', "json", "t.json")) == [
        't.json:1: expected an array of prompts, or an object with a "prompts" array; got '
        "'just a string'"
    ]
    assert errors(parse('\n{"items": []}', "json", "t.json")) == [
        't.json:2: expected an array of prompts, or an object with a "prompts" array; this '
        'object has no "prompts" key'
    ]
    assert errors(parse('{\n"prompts":\n  {"prompt": "x"}}', "json", "t.json")) == [
        "t.json:3: field 'prompts': expected an array, got an object"
    ]


def test_prompts_key_is_case_insensitive() -> None:
    assert texts(parse('{"Prompts": ["a"]}', "json")) == ["a"]


def test_value_type_errors() -> None:
    text = json.dumps(
        [
            {"prompt": 5},
            {"prompt": "a", "priority": True},
            {"prompt": "a", "page": 2.5},
            {"prompt": "a", "page": 2.0, "chapter": ["x"]},
            {"prompt": "a", "characters": ["ok", 3]},
            {"prompt": "a", "characters": 3},
            {"prompt": "a", "style": 1},
            {"prompt": "a", "metadata": [1]},
        ]
    )
    assert errors(parse(text, "json", "v.json")) == [
        "v.json:1: field 'prompt': expected text, got 5",
        "v.json:1: field 'priority': expected an integer, got true",
        "v.json:1: field 'page': expected a positive integer, got 2.5",
        "v.json:1: field 'chapter': expected a text label, got a list",
        "v.json:1: field 'characters': expected a list of names, but one element is 3",
        "v.json:1: field 'characters': expected a list of names or a text, got 3",
        "v.json:1: field 'style': expected text, got 1",
        "v.json:1: field 'metadata': expected an object, got a list",
    ]


def test_nulls_mean_default() -> None:
    [spec] = parse(
        '[{"prompt": "a", "page": null, "images": null, "metadata": null}]', "json"
    ).specs
    assert (spec.page, spec.images, spec.metadata) == (None, 1, {})


def test_unknown_keys_are_metadata_with_one_warning_per_key() -> None:
    text = (
        '[{"prompt": "a", "mood": "dark", "metadata": {"lens": 35}},\n {"prompt": "b", "mood": 1}]'
    )
    result = parse(text, "json", "m.json")
    assert [spec.metadata for spec in result.specs] == [{"lens": 35, "mood": "dark"}, {"mood": 1}]
    assert warnings(result) == ["m.json:1: warning: unknown key 'mood' is kept as metadata"]


def test_pathological_json_does_not_crash() -> None:
    deep = parse("[" * 100_000, "json", "d.json")
    assert len(deep.errors) == 1
    huge = parse('[{"prompt": "a", "page": ' + "9" * 5000 + "}]", "json", "h.json")
    assert len(huge.errors) == 1
    assert "invalid JSON" in str(huge.errors[0])


def test_lone_surrogate_escape_is_an_error() -> None:
    result = parse('["fine", "bad \\ud800 text", "ok \\ud83d\\ude00"]', "json", "s.json")
    assert texts(result) == ["fine", "ok \U0001f600"]
    assert len(result.errors) == 1
    assert "lone surrogate" in str(result.errors[0])


def test_empty_json_file_warns(tmp_path: Path) -> None:
    result = load(tmp_path, "e.json", "  \n")
    assert errors(result) == []
    assert result.specs == []
    assert warnings(result) == [f"{tmp_path / 'e.json'}: warning: file is empty"]


# JSON Lines --------------------------------------------------------------------------------


def test_jsonl_each_bad_line_reported_others_parsed() -> None:
    text = (
        '{"prompt": "one", "page": 1}\n'
        "\n"
        '"two"\n'
        "   {bad json}\n"
        "[1, 2]\n"
        '{"prompt": "six", "images": 12}\n'
        '{"prompt": "seven"}'
    )
    result = parse(text, "jsonl", "l.jsonl")
    assert texts(result) == ["one", "two", "seven"]
    assert [spec.source.line for spec in result.specs] == [1, 3, 7]
    assert errors(result) == [
        "l.jsonl:4:5: invalid JSON: Expecting property name enclosed in double quotes",
        "l.jsonl:5: this line must be an object or a text, got a list",
        "l.jsonl:6: field 'images': expected an integer from 1 to 8, got 12",
    ]


def test_jsonl_pretty_printed_json_gives_capped_errors(tmp_path: Path) -> None:
    text = json.dumps([{"prompt": str(n)} for n in range(50)], indent=2)
    result = load(tmp_path, "p.jsonl", text, max_errors=3)
    assert len(result.errors) == 4
    assert result.errors[-1].message == "too many errors; stopping after 3"
