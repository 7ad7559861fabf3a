"""The token the route answers: Pica's page plus isWhiteLabel, or several pages merged as the official generator does."""

from __future__ import annotations

import json

import pytest

from pica_core.client import AuthKitPage, _authkit_page, authkit_token_json


def page(n: int, pages: int, rows: list[dict], request_id: int, spacing: str = "") -> AuthKitPage:
    body = json.dumps({"rows": rows, "total": 3, "pages": pages, "page": n, "requestId": request_id},
                      indent=spacing or None).encode() + spacing.encode()
    return _authkit_page(body)


@pytest.mark.parametrize("white_label", [True, False])
@pytest.mark.parametrize("spacing", ["", "  \n"])
def test_one_page_is_pica_answer_plus_the_flag(white_label, spacing):
    only = page(1, 1, [{"type": "gmail", "title": "Gmail ✉"}], 7, spacing)
    token = json.loads(authkit_token_json([only], white_label))
    assert token == {**json.loads(only.body), "isWhiteLabel": white_label}


def test_several_pages_are_merged_into_one():
    first = page(1, 2, [{"type": "gmail"}, {"type": "slack"}], 7)
    second = page(2, 2, [{"type": "notion"}], 8)
    assert first.pages == 2
    token = json.loads(authkit_token_json([first, second], True))
    assert token == {"rows": [{"type": "gmail"}, {"type": "slack"}, {"type": "notion"}], "page": 1, "pages": 1,
                     "total": 3, "requestId": 8, "isWhiteLabel": True}


@pytest.mark.parametrize("body", [b"", b"not json", b'{"rows": null}', b'{"rows": [1, 2]}', b"[]", b'{"total": 3}'])
def test_a_page_the_widget_could_not_read_is_refused(body):
    with pytest.raises(ValueError):
        _authkit_page(body)
