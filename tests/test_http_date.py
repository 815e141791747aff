"""The Date header's text: RFC 9110 IMF-fixdate, the same as the standard library's
``email.utils.formatdate(usegmt=True)`` for any time, in English whatever the locale."""

from __future__ import annotations

import locale
from email.utils import formatdate

import pytest

from wherry.connection.context import http_date


@pytest.mark.parametrize(
    "seconds",
    [0, 784111777, 951782400, 1709164800.5, 4102444800, *range(1_700_000_000, 1_800_000_000, 7_654_321)],
)
def test_http_date_is_imf_fixdate(seconds: float) -> None:
    assert http_date(seconds) == formatdate(seconds, usegmt=True).encode("ascii")


def test_http_date_ignores_the_locale() -> None:
    saved = locale.setlocale(locale.LC_TIME)
    try:
        for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8"):
            try:
                locale.setlocale(locale.LC_TIME, name)
            except locale.Error:
                continue
            assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    finally:
        locale.setlocale(locale.LC_TIME, saved)
