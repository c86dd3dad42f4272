"""Output names follow the script, fall back predictably, and are always safe paths."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novelgen_desktop.errors import OutputError
from novelgen_desktop.output.naming import (
    DEFAULT_TEMPLATE,
    MAX_COMPONENT_BYTES,
    MAX_PATH_CHARS,
    NameFields,
    NamingTemplate,
    TemplateError,
    disambiguate,
    render_name,
    sanitize_component,
    slugify,
    validate_template,
)

RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in "123456789¹²³"
}


def fields(**kwargs: object) -> NameFields:
    base: dict[str, object] = {"seq": 7, "extension": ".png", "chapter": "1", "page": 3, "panel": 2}
    base.update(kwargs)
    return NameFields(**base)  # type: ignore[arg-type]


def render(template: str = DEFAULT_TEMPLATE, **kwargs: object) -> str:
    return NamingTemplate(template).render(fields(**kwargs)).as_posix()


def assert_safe(path: PurePosixPath) -> None:
    text = path.as_posix()
    assert not path.is_absolute()
    assert len(text) <= MAX_PATH_CHARS
    assert "\\" not in text
    for part in path.parts:
        assert part not in ("", ".", "..")
        assert not part.startswith(".")
        assert len(part.encode("utf-8")) <= MAX_COMPONENT_BYTES
        assert not set(part) & set('<>:"/\\|?*')
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in part)
        assert part == part.strip()
        assert not part.endswith((".", " "))
        assert part.split(".")[0].rstrip(" ").upper() not in RESERVED


# --- defaults and fields --------------------------------------------------------------------


def test_default_template() -> None:
    assert render() == "1/003-02.png"
    assert render(chapter="Prologue", page=12, panel=10) == "Prologue/012-10.png"


def test_real_extension_replaces_the_template_one() -> None:
    assert render(extension=".jpg") == "1/003-02.jpg"
    assert render(extension="webp") == "1/003-02.webp"
    assert render(extension=".PNG") == "1/003-02.png"
    assert render("{seq}.JPEG", extension=".webp") == "7.webp"


def test_template_without_extension_gets_one() -> None:
    assert render("{chapter}-{page}-{panel}") == "1-3-2.png"


def test_other_dotted_tails_are_kept() -> None:
    assert render("{page}.v2") == "3.v2.png"


def test_all_fields_and_format_specs() -> None:
    template = "{job}/{task:06d}-{seq:04d}-{variant}-{slug:.10}-{page:03x}"
    got = render(template, job="j1", task=42, page=255, slug="a-lone-detective", images=2)
    assert got == "j1/000042-0007-1-a-lone-det-0ff.png"


def test_backslash_in_template_is_a_separator() -> None:
    assert render("{chapter}\\{page}") == "1/3.png"


def test_render_name_accepts_str_or_template() -> None:
    assert render_name(DEFAULT_TEMPLATE, fields()) == PurePosixPath("1/003-02.png")
    assert render_name(NamingTemplate(), fields()) == PurePosixPath("1/003-02.png")


def test_template_fields_property() -> None:
    assert NamingTemplate().fields == {"chapter", "page", "panel"}


# --- fallback -------------------------------------------------------------------------------


def test_plain_prompt_list_falls_back_to_seq() -> None:
    template = NamingTemplate()
    plain = NameFields(seq=42, extension=".png")
    assert template.render(plain) == PurePosixPath("00042.png")
    assert template.uses_fallback(plain)
    assert template.missing_fields(plain) == ("chapter", "page", "panel")


def test_one_missing_field_falls_back_for_the_whole_name() -> None:
    template = NamingTemplate()
    partial = NameFields(seq=5, extension=".jpg", chapter="2", page=None, panel=1)
    assert template.render(partial) == PurePosixPath("00005.jpg")
    assert template.missing_fields(partial) == ("page",)


def test_blank_string_counts_as_missing() -> None:
    assert render(chapter="  ") == "00007.png"
    assert render("{slug}", slug="") == "00007.png"


def test_complete_fields_do_not_fall_back() -> None:
    template = NamingTemplate()
    assert not template.uses_fallback(fields())
    assert template.missing_fields(fields()) == ()


def test_fields_not_in_template_may_be_missing() -> None:
    assert render("{seq:03d}", chapter=None, page=None, panel=None) == "007.png"


# --- variants -------------------------------------------------------------------------------


def test_variants_are_tagged_when_template_lacks_variant() -> None:
    assert render(images=3, variant=1) == "1/003-02-v1.png"
    assert render(images=3, variant=3, extension=".jpg") == "1/003-02-v3.jpg"


def test_single_image_has_no_variant_tag() -> None:
    assert render(images=1) == "1/003-02.png"


def test_template_with_variant_is_not_tagged_again() -> None:
    assert render("{chapter}/{page}-{panel}_{variant}", images=2, variant=2) == "1/3-2_2.png"


def test_fallback_keeps_variants_apart() -> None:
    template = NamingTemplate()
    names = {
        template.render(NameFields(seq=9, extension=".png", images=2, variant=v)) for v in (1, 2)
    }
    assert names == {PurePosixPath("00009-v1.png"), PurePosixPath("00009-v2.png")}


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{pgae}", "unknown field 'pgae'; known fields: chapter, job, page, panel, seq, slug"),
        ("{chapter:03d}", "invalid format spec '03d' for field 'chapter'"),
        ("{page:s}", "invalid format spec 's' for field 'page'"),
        ("{}", "positional field"),
        ("{0}", "positional field"),
        ("{page.real}", "attribute and index lookups"),
        ("{chapter[0]}", "attribute and index lookups"),
        ("{page!r}", "conversions"),
        ("{page:{seq}}", "nested fields"),
        ("{page:0>100000}", "wider than a path"),
        ("{page", "invalid naming template"),
        ("page}", "invalid naming template"),
        ("", "empty naming template"),
        ("   ", "empty naming template"),
        ("/abs/{page}", "relative path"),
        ("\\\\server\\share\\{page}", "relative path"),
        ("C:/{page}", "relative path"),
        ("a//{page}", "empty path component"),
        ("{page}/", "empty path component"),
        ("../{page}", "'..'"),
        ("./{page}", "'.'"),
        ("cover.png", "uses no field"),
        ("{chapter}/.png", "no file name"),
        ("/".join(["{seq}"] * 9), "levels deep"),
    ],
)
def test_invalid_templates(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=None) as excinfo:
        validate_template(template)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, OutputError)
    with pytest.raises(TemplateError):
        NamingTemplate(template)


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_TEMPLATE,
        "{page:03x}",
        "{chapter:>5}/{page}",
        "{chapter:.3}-{seq}",
        "{job}/{seq:05d}.jpg",
        "{slug}",
        "{{literal}}-{seq}",
        "/".join(["{seq}"] * 8),
    ],
)
def test_valid_templates(template: str) -> None:
    validate_template(template)


def test_literal_braces() -> None:
    assert render("{{x}}-{seq}") == "{x}-7.png"


def test_value_that_does_not_suit_the_spec_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="does not suit"):
        NamingTemplate("{page:03d}").render(fields(page="3"))


def test_name_fields_validation() -> None:
    with pytest.raises(ValueError, match="1-based"):
        NameFields(seq=0, extension=".png")
    with pytest.raises(ValueError, match="1-based"):
        NameFields(seq=1, extension=".png", variant=0)
    with pytest.raises(ValueError, match="extension"):
        NameFields(seq=1, extension="../x")
    with pytest.raises(ValueError, match="extension"):
        NameFields(seq=1, extension=".png\n")
    assert NameFields(seq=1, extension="JPG").extension == ".jpg"


# --- sanitization ---------------------------------------------------------------------------


def test_separators_in_values_never_create_directories() -> None:
    assert render(chapter="a/../b") == "a_.._b/003-02.png"
    assert render(chapter="..\\..\\etc") == "___.._etc/003-02.png"


def test_dot_components() -> None:
    assert render(chapter="..") == "_/003-02.png"
    assert render(chapter=".") == "_/003-02.png"
    assert render(chapter=".hidden") == "_hidden/003-02.png"


def test_invalid_windows_characters() -> None:
    assert render(chapter='a<b>c:d"e|f?g*h') == "a_b_c_d_e_f_g_h/003-02.png"


def test_control_characters_are_stripped() -> None:
    assert render(chapter="a\x00b\x1fc\x7fd") == "abcd/003-02.png"
    assert render(chapter="two\nlines\ttab") == "two lines tab/003-02.png"
    assert render(chapter="evil\u202egnp.exe") == "evilgnp.exe/003-02.png"


def test_trailing_dots_and_spaces() -> None:
    assert render(chapter="  Chapter 1. . ") == "Chapter 1/003-02.png"
    assert render("{chapter}", chapter="end...") == "end.png"


def test_empty_after_sanitizing() -> None:
    assert render(chapter="\x00\x01") == "_/003-02.png"
    assert render(chapter="...") == "_/003-02.png"


@pytest.mark.parametrize(
    ("chapter", "expected"),
    [
        ("CON", "CON_"),
        ("con", "con_"),
        ("Nul.txt", "Nul_.txt"),
        ("aux.tar.gz", "aux_.tar.gz"),
        ("COM1", "COM1_"),
        ("lpt9", "lpt9_"),
        ("COM¹", "COM¹_"),
        ("CON .x", "CON _.x"),
        ("CONSOLE", "CONSOLE"),
        ("COM0", "COM0"),
        ("COM10", "COM10"),
    ],
)
def test_windows_reserved_names(chapter: str, expected: str) -> None:
    assert render(chapter=chapter) == f"{expected}/003-02.png"


def test_reserved_file_name_keeps_extension() -> None:
    assert render("{chapter}", chapter="nul") == "nul_.png"
    assert render("{chapter}", chapter="PRN", extension=".jpg") == "PRN_.jpg"


def test_component_byte_limit_cuts_on_character_boundary() -> None:
    got = render(chapter="é" * 200)
    directory = got.split("/")[0]
    assert directory == "é" * (MAX_COMPONENT_BYTES // 2)
    got = render(chapter="a" + "😀" * 100)
    directory = got.split("/")[0]
    assert len(directory.encode()) <= MAX_COMPONENT_BYTES
    directory.encode("utf-8")  # no broken characters


def test_file_name_limit_keeps_extension_and_variant() -> None:
    got = PurePosixPath(render("{slug}", slug="s" * 500, images=2, variant=2, extension=".webp"))
    assert got.name.endswith("-v2.webp")
    assert len(got.name.encode()) == MAX_COMPONENT_BYTES


def test_total_path_limit_shortens_longest_components_evenly() -> None:
    template = "{job}/{chapter}/{slug}/{slug}/{slug}"
    got = NamingTemplate(template).render(fields(job="j" * 300, chapter="c" * 20, slug="s" * 40))
    assert len(got.as_posix()) <= MAX_PATH_CHARS
    job, chapter, *_ = got.parts
    assert chapter == "c" * 20  # short components are left alone
    assert len(job) > 20


def test_nfc_normalisation() -> None:
    assert render(chapter="e\u0301") == "\u00e9/003-02.png"


def test_unicode_is_kept() -> None:
    assert render(chapter="第一章 😀") == "第一章 😀/003-02.png"


def test_sanitize_component_direct() -> None:
    assert sanitize_component("a/b") == "a_b"
    assert sanitize_component("a\ud800b") == "a_b"
    assert sanitize_component("x" * 300, 10) == "x" * 10
    with pytest.raises(ValueError, match="max_bytes"):
        sanitize_component("x", 3)


_TEXT = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            [*'./\\:<>"|?* \t\n\x00\u202e', "CON", "com1", "..", "Lpt3.", "é", "\ud800"]
        ),
    ),
    max_size=300,
).map("".join)


@given(
    chapter=_TEXT,
    slug=_TEXT,
    job=_TEXT,
    page=st.integers(-(10**30), 10**30),
    variant=st.integers(1, 9),
    images=st.integers(1, 9),
    template=st.sampled_from(
        [
            DEFAULT_TEMPLATE,
            "{job}/{chapter}/{slug}-{page}",
            "{chapter}{slug}/{job}/{chapter}/{slug}/{job}/{chapter}/{slug}",
            "{slug}.{chapter}",
            "{chapter}",
        ]
    ),
)
def test_arbitrary_values_give_safe_paths(
    *, chapter: str, slug: str, job: str, page: int, variant: int, images: int, template: str
) -> None:
    f = NameFields(
        seq=1,
        extension=".jpg",
        chapter=chapter,
        page=page,
        panel=1,
        variant=variant,
        images=max(images, variant),
        job=job,
        slug=slug,
    )
    path = NamingTemplate(template).render(f)
    assert_safe(path)
    assert path.suffix == ".jpg"
    if images > 1 or variant > 1:
        assert path.stem.endswith(f"-v{variant}")


@given(_TEXT, st.integers(8, 200))
def test_sanitize_component_is_safe_and_idempotent(text: str, limit: int) -> None:
    once = sanitize_component(text, limit)
    assert_safe(PurePosixPath(once))
    assert len(once.encode()) <= limit
    assert sanitize_component(once, limit) == once


# --- slug -----------------------------------------------------------------------------------


def test_slugify() -> None:
    assert (
        slugify("A lone Detective walks, through the rain!")
        == "a-lone-detective-walks-through-the-rain"
    )
    assert slugify("A lone detective walks through the rain-soaked streets") == (
        "a-lone-detective-walks-through-the-rain"
    )
    assert slugify("雨の夜、探偵が歩く 😀") == "雨の夜-探偵が歩く"
    assert slugify("😀 !!! ...") == ""
    assert slugify("x" * 100) == "x" * 40
    assert slugify("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"


@given(st.text(max_size=200))
def test_slug_limits(text: str) -> None:
    slug = slugify(text)
    assert len(slug) <= 40
    assert all(ch.isalnum() or ch in "-_" for ch in slug)
    assert not slug.startswith("-")
    assert not slug.endswith("-")
    # A slug is a value, not yet a name ("nul" is a fine slug); rendering makes it safe.
    assert_safe(NamingTemplate("{slug}").render(fields(slug=slug)))


# --- disambiguate ---------------------------------------------------------------------------


def test_disambiguate_free_path_is_unchanged() -> None:
    path = PurePosixPath("1/003-02.png")
    assert disambiguate(path, lambda p: False) == path


def test_disambiguate_counts_up() -> None:
    taken = {"1/003-02.png", "1/003-02-2.png", "1/003-02-3.png"}
    got = disambiguate(PurePosixPath("1/003-02.png"), lambda p: p.as_posix() in taken)
    assert got == PurePosixPath("1/003-02-4.png")


def test_disambiguate_without_suffix_and_variants() -> None:
    assert disambiguate(PurePosixPath("a/b"), lambda p: p.name == "b") == PurePosixPath("a/b-2")
    got = disambiguate(PurePosixPath("00001-v2.png"), lambda p: p.name == "00001-v2.png")
    assert got == PurePosixPath("00001-v2-2.png")


def test_disambiguate_respects_limits() -> None:
    long_name = NamingTemplate("{slug}").render(fields(slug="s" * 300))
    got = disambiguate(long_name, lambda p: p == long_name)
    assert got.name.endswith("-2.png")
    assert_safe(got)
    deep = NamingTemplate("{job}/{chapter}/{slug}").render(
        fields(job="j" * 300, chapter="c" * 300, slug="s" * 300)
    )
    got = disambiguate(deep, lambda p: p == deep)
    assert_safe(got)
    assert got.name.endswith("-2.png")


def test_disambiguate_gives_up() -> None:
    with pytest.raises(OutputError, match="no free name"):
        disambiguate(PurePosixPath("a.png"), lambda p: True, limit=5)


def test_disambiguate_case_insensitive_callback() -> None:
    existing = {"ch1/001-01.png"}
    got = disambiguate(
        PurePosixPath("CH1/001-01.png"), lambda p: p.as_posix().casefold() in existing
    )
    assert got == PurePosixPath("CH1/001-01-2.png")
