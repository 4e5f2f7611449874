"""htu normalization (RFC 3986 §6.2.2-6.2.3) as a pure function."""

from __future__ import annotations

import pytest

from dpop_middleware.core.htu import HTUError, htu_matches, normalize_htu, remove_dot_segments


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HTTPS://Example.COM", "https://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:0080/a", "http://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
        ("https://example.com/%7Euser/%41", "https://example.com/~user/A"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/b/..", "https://example.com/a/"),
        ("https://example.com/../../a", "https://example.com/a"),
        ("https://example.com/a?q=1#f", "https://example.com/a"),
        ("wss://example.com/socket", "https://example.com/socket"),
        ("ws://example.com:80/socket", "http://example.com/socket"),
        ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
        ("https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/x"),
        ("https://example.com/caf\u00e9", "https://example.com/caf%C3%A9"),
        ("https://example.com/Case/Path", "https://example.com/Case/Path"),
    ],
)
def test_normalize(raw: str, normal: str) -> None:
    assert normalize_htu(raw) == normal


@pytest.mark.parametrize(
    "bad",
    [
        "example.com/a",
        "/a",
        "ftp://example.com/a",
        "https://user:pw@example.com/",
        "https://example.com:99999/",
        "https://example.com:-1/",
        "https://example.com:\uff18\uff10/",  # full-width digits
        "https:///a",
        "https://exa mple.com/",
        "https://example.com/a b",
        "https://example.com/a%g0",
        "https://example.com/a%",
        "https://example.com/\x00",
        "https://[::1/",
    ],
)
def test_rejects(bad: str) -> None:
    with pytest.raises(HTUError):
        normalize_htu(bad)
    assert not htu_matches("https://example.com/a", bad)


def test_remove_dot_segments_rfc_examples() -> None:
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("/mid/content=5/../6") == "/mid/6"


def test_matches_is_exact_after_normalization() -> None:
    assert htu_matches("https://example.com/api/items", "https://EXAMPLE.com:443/api/%69tems?x")
    assert not htu_matches("https://example.com/api/items", "https://example.com/items")
    assert not htu_matches("https://example.com/api/items", "https://example.com/API/items")


def test_lone_surrogate_is_an_error_not_a_crash() -> None:
    with pytest.raises(HTUError):
        normalize_htu("https://example.com/a\ud800b")
