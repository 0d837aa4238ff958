"""The reports' Markdown escaping, rendered by GitHub's own Markdown parser (cmark-gfm, through cmarkgfm): untrusted
text comes out as the text it was — no HTML, link, image or emphasis, and no link for a bare address, which
GitHub's Markdown makes by itself (`https://…`, `www.…`)."""

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.report.escape import md_literal, md_text

# A dev dependency of the main environment (make install); the vLLM environment collects this file without it.
cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (GitHub's Markdown parser) is not installed: make install")
Options = cmarkgfm.cmark.Options

ADDRESSES = ["see https://phish.invalid/login now", "(http://tracker.invalid/p.png)", "ftp://files.invalid/x",
             "www.phish.invalid/a_b", "x:https://e.invalid", "_https://e.invalid_", "HTTPS://LOUD.INVALID",
             "a](https://x.invalid) [b]: https://y.invalid", "a\\://b.invalid", "<https://angle.invalid>",
             "[t](javascript:alert(1))", "![i](http://tracker.invalid/i.png)", "WWW.upper.invalid",
             # An escaped backtick opens no code span: read as one, the address after it was left unescaped.
             "\\`https://phish.invalid/login`", "a \\\\`https://b.invalid` c", "\\``x` https://c.invalid`"]


def rendered(markdown: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def shown(page: str) -> str:
    """The text a reader sees: tags dropped, entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", page)).strip()


@pytest.mark.parametrize("text", ADDRESSES)
def test_no_address_becomes_a_link_and_the_text_is_shown_as_written(text):
    for escape in (md_text, md_literal):
        page = rendered(escape(text))
        assert "<a " not in page and "<img" not in page, (escape.__name__, page)
    assert shown(rendered(md_literal(text))) == text  # md_text keeps emphasis, by design: _x_ is shown x


def test_our_code_spans_keep_their_addresses_unescaped():
    # A base_url in a code span is shown as written (a backslash there would show); nothing links inside one.
    page = rendered(md_text("endpoint `http://127.0.0.1:8000/v1` refused; see https://status.invalid"))
    assert "<code>http://127.0.0.1:8000/v1</code>" in page and "<a " not in page
    assert "see https://status.invalid" in shown(page)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ahtps:/w.x1_*[]()!<>`\\| @&#-\t")), max_size=40))
def test_text_with_our_markup_links_no_address(text):
    # md_text keeps code spans and emphasis: untrusted text through it links nothing either (but e-mail addresses).
    page = rendered(md_text(text))
    assert "<img" not in page and not re.search(r'<a href="(?!mailto:)', page), (text, page)


def test_our_code_span_may_end_in_a_backslash():
    # A backslash inside a code span escapes nothing (CommonMark): a path ending in one kept its span closed.
    page = rendered(md_text("run `C:\\runs\\` then `explore` at https://x.invalid"))
    assert "<code>C:\\runs\\</code>" in page and "<code>explore</code>" in page and "<a " not in page


def test_an_email_address_is_the_one_link_left():
    # cmark-gfm finds e-mail addresses in the text after escapes are read: no escape keeps one as written unlinked.
    # Said in engine/report/escape.py; this fails, and the comment must change, if that ever stops being so.
    assert 'href="mailto:' in rendered(md_literal("write to a@b.invalid"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ahtps:/w.x1_*[]()!<>`\\| @&#-\t")), max_size=40))
def test_literal_text_is_shown_exactly_and_links_nothing_but_email(text):
    page = rendered(md_literal(text))
    assert "<img" not in page and "<code" not in page and "<em" not in page and "<strong" not in page
    assert not re.search(r'<a href="(?!mailto:)', page), (text, page)
    assert shown(page) == text.strip(" \t")


def test_a_right_to_left_override_never_reaches_a_report():
    # An override left open in a model's name reversed the report's own text after it (report.html, report.md).
    from engine.report.escape import html_text, md_literal, md_text

    for escape in (md_text, md_literal, html_text):
        shown = escape("evil\u202eRTL\u2067x\u2069")
        assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"), escape
        assert "evilRTLx" in shown.replace("\\", "")
    assert html_text("שלום") == "שלום"  # right-to-left letters themselves are kept
