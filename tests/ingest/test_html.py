"""HTML: what is dropped, where paragraphs break, headings as sections, titles, encodings,
and hostile markup (marked sections, unclosed constructs, tag soup)."""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.generators import run_to_end
from ingest.errors import EmptyFileError
from ingest.html import decode_markup, parse_html, read_html
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind


def run(reader: Generator[ReadProgress, None, ExtractedText]) -> ExtractedText:
    return run_to_end(reader, lambda _progress: None)


def read(markup: str | bytes, name: str = "page.html") -> ExtractedText:
    data = markup.encode() if isinstance(markup, str) else markup
    return run(read_html(data, name, ReadOptions()))


PAGE = """<!DOCTYPE html>
<html>
<head>
  <title>The  Page &amp; Its Title</title>
  <meta charset="utf-8">
  <style>body { color: red; } p::after { content: "styled"; }</style>
  <script>document.write("<p>scripted</p>");</script>
</head>
<body>
  <template><p>templated</p></template>
  <noscript>Please enable JavaScript.</noscript>
  <p>Before any
     heading: caf&eacute; &#8220;quoted&#8221; &lt;tag&gt;</p>
  <h1>First <em>Chapter</em></h1>
  <p>One paragraph.</p><p>Another<br>line after a break.</p>
  <div>In a div</div><ul><li>item one</li><li>item two</li></ul>
  <h2><a id="anchor"></a></h2>
  <h2>Second Part</h2>
  <table><tr><td>cell a</td><td>cell b</td></tr><tr><td>row two</td></tr></table>
  <pre>code  keeps
  its lines</pre>
</body>
</html>
"""


def test_dropped_elements_never_reach_the_text() -> None:
    text = read(PAGE).text
    for dropped in ("color: red", "styled", "scripted", "templated", "JavaScript", "utf-8"):
        assert dropped not in text


def test_entities_are_decoded_and_source_whitespace_collapsed() -> None:
    text = read(PAGE).text
    assert text.startswith("Before any heading: café “quoted” <tag>")


def test_blocks_break_paragraphs() -> None:
    text = read(PAGE).text
    assert (
        "One paragraph.\n\nAnother\n\nline after a break.\n\nIn a div\n\nitem one\n\nitem two"
        in (text)
    )
    assert "cell a cell b\n\nrow two" in text


def test_headings_become_sections_with_levels() -> None:
    extracted = read(PAGE)
    assert extracted.format is Format.HTML
    assert extracted.title == "The Page & Its Title"
    assert [(s.label, s.kind, s.level) for s in extracted.sections] == [
        ("The Page & Its Title", SectionKind.FRONT, 1),
        ("First Chapter", SectionKind.HEADING, 1),
        ("Second Part", SectionKind.HEADING, 2),
    ]
    first = extracted.sections[1]
    assert extracted.text[first.start : first.end].startswith("First Chapter\n\nOne paragraph.")


def test_title_falls_back_to_the_first_h1() -> None:
    extracted = read("<body><h2>Minor</h2><p>x</p><h1>Major</h1><p>y</p></body>")
    assert extracted.title == "Major"


def test_without_title_or_h1() -> None:
    extracted = read("<p>Only a paragraph.</p>")
    assert extracted.title is None
    assert [(s.label, s.kind) for s in extracted.sections] == [("Start", SectionKind.FRONT)]


def test_head_without_end_tag_still_ends_at_body() -> None:
    parsed = parse_html("<html><head><title>T</title><body><p>Visible</p></body></html>")
    assert parsed.title == "T"
    assert "Visible" in parsed.text


def test_svg_title_does_not_replace_the_page_title() -> None:
    parsed = parse_html("<title>Page</title><body><svg><title>Icon</title></svg><p>x</p></body>")
    assert parsed.title == "Page"


def test_xhtml_parses_like_html() -> None:
    xhtml = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>X</title></head>'
        "<body><h1>Chapter One</h1><p>It&#160;was dark.</p><p/><br/><p>Then light.</p>"
        "</body></html>"
    )
    parsed = parse_html(xhtml)
    assert parsed.first_heading == "Chapter One"
    assert [part.kind for part in parsed.parts] == [SectionKind.HEADING]
    assert "It was dark.\n\n" in parsed.text  # a no-break space is a space


def test_declared_encodings() -> None:
    latin = '<html><head><meta charset="iso-8859-1"></head><body>caf\xe9</body></html>'
    assert "café" in decode_markup(latin.encode("latin-1"))
    koi8 = '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>Привет</p>'
    assert "Привет" in decode_markup(koi8.encode("koi8-r"))
    xml = '<?xml version="1.0" encoding="windows-1251"?><p>Привет</p>'
    assert "Привет" in decode_markup(xml.encode("cp1251"))
    # A BOM outranks a declaration.
    assert "Привет" in decode_markup(b"\xef\xbb\xbf" + koi8.replace("koi8-r", "x").encode())


def test_a_page_without_text_is_refused() -> None:
    with pytest.raises(EmptyFileError, match=r"empty\.html has no text"):
        read(
            "<html><head><title>T</title></head><body><script>x()</script></body></html>",
            "empty.html",
        )


@given(st.text(max_size=500))
def test_parsing_never_raises_on_arbitrary_markup(markup: str) -> None:
    parsed = parse_html(markup)
    assert isinstance(parsed.text, str)


@given(st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=200))
def test_plain_words_survive(words: str) -> None:
    assert parse_html(f"<p>{words}</p>").text.strip() == words


# --------------------------------------------------------------------------------------------
# Hostile markup


def test_marked_sections_read_as_html5_does() -> None:
    # An unknown keyword made html.parser raise AssertionError; HTML5 skips it up to ">".
    assert parse_html("<p>Hello world.</p><![foo[ x ]]><p>After.</p>").text.split() == [
        "Hello",
        "world.",
        "After.",
    ]
    assert "Before" in parse_html("<p>Before</p><![ [").text
    # CDATA is text (XHTML); Word's conditional comments keep what lies between them.
    assert "a < b" in parse_html("<p><![CDATA[a < b]]></p>").text
    assert parse_html("<p><![if !supportLists]>1.<![endif]> Item</p>").text.strip() == "1. Item"


@pytest.mark.parametrize(
    "markup",
    [
        "<a " * 50_000,  # took 30 s for 60 KB
        '<p a="b" c' * 20_000,
        "<!--x>" * 50_000,
        "<a/" * 50_000,
        "<![CDATA[x>" * 30_000,
        "<p>text</p><!-- never closed " + "<b>bold</b> " * 20_000,
    ],
)
def test_unclosed_markup_parses_in_linear_time(markup: str) -> None:
    # html.parser's end-of-input pass was quadratic on these: minutes for a few hundred KB.
    started = time.monotonic()
    parse_html(markup)
    assert time.monotonic() - started < 5


def test_text_after_the_last_tag_is_kept() -> None:
    assert parse_html("<p>Kept &amp; read</p>Tail &amp; <b").text.split() == [
        "Kept",
        "&",
        "read",
        "Tail",
        "&",
        "<b",
    ]


_TAG_SOUP = st.sampled_from(
    ["<p>", "</p>", "<h1>", "</h1>", "<br/>", "<script>", "</script>", "<title>", "<!--", "-->",
     "<![", "<![CDATA[", "]]>", "<![foo[", "<!DOCTYPE html>", "<?xml ?>", "<", ">", "</", "&",
     "&amp;", "&#", "'", '"', "=", "<a href='", " ", "\n", "word"]
)  # fmt: skip


@given(st.lists(_TAG_SOUP | st.text(max_size=4), max_size=80))
def test_parsing_never_raises_on_tag_soup(pieces: list[str]) -> None:
    assert isinstance(parse_html("".join(pieces)).text, str)
