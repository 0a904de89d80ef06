"""Hostile HTTP input for the fuzz tests: bodies, headers, query strings, and the settings.

`FUZZ` is the one hypothesis configuration: derandomized (CI runs exactly the examples checked
before landing) and no example database. `CHANNEL_SYNC_FUZZ_EXAMPLES` raises the example count
for a longer local run (`CHANNEL_SYNC_FUZZ_EXAMPLES=2000 pytest tests/fuzz`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CHANNEL_SYNC_FUZZ_EXAMPLES", "150"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one store per test, counted per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class Body(bytes):
    """Bytes whose repr stays short, so a failing example of a megabyte body prints readably."""

    def __repr__(self) -> str:
        if len(self) <= 120:
            return super().__repr__()
        return f"Body({bytes(self[:60])!r} ... {len(self)} bytes ... {bytes(self[-20:])!r})"


DEPTH = 100_000  # far past CPython's recursion limit: json.loads raises RecursionError


def nested_json(depth: int, opener: str = "[") -> bytes:
    """`[[[...]]]` (or `{"a":{"a":...}}`) `depth` levels deep: valid JSON, hostile to parsers."""
    if opener == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

hostile_bodies: st.SearchStrategy[Body] = st.one_of(
    st.binary(max_size=512),
    st.just(b""),
    st.just(b"\xff\xfe\xfa{not utf-8}"),
    st.text(max_size=200).map(lambda text: text.encode("utf-16")),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=DEPTH).map(lambda depth: nested_json(depth)),
    st.sampled_from([nested_json(DEPTH), nested_json(DEPTH, "{"), nested_json(5_000, "{")]),
    st.integers(min_value=1, max_value=3).map(lambda n: b'{"k":"' + b"x" * (n * 400_000) + b'"}'),
    st.just(b'{"id": 1e999999, "n": -1e999999}'),
    st.just(b'{"a": 1, "a": 2}'),
    st.just(b"\x00" * 1024),
).map(Body)

content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
        "application/json;;;charset===",
    ]
)

# Header values as raw bytes: anything a proxy could pass on (no CR, LF or NUL: h11 refuses them).
header_values = st.binary(max_size=80).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)
header_names = st.sampled_from(
    [
        b"x-shopify-hmac-sha256",
        b"x-shopify-topic",
        b"x-shopify-webhook-id",
        b"x-shopify-event-id",
        b"x-shopify-shop-domain",
        b"x-shopify-triggered-at",
        b"x-ebay-signature",
        b"content-type",
        b"content-encoding",
        b"transfer-encoding",
        b"authorization",
        b"x-forwarded-for",
    ]
) | st.from_regex(rb"\Ax-[a-z0-9-]{1,20}\Z")

random_headers = st.lists(st.tuples(header_names, header_values), max_size=8)

query_keys = st.sampled_from(
    ["channel", "status", "oversold", "limit", "cursor", "state", "offset", "challenge_code"]
) | st.text(max_size=10)
query_values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(["", "true", "false", "1", "0", "-1", "dead", "open", "nan", "1e9", "%00"]),
    st.just("x" * 5000),
)
query_items = st.lists(st.tuples(query_keys, query_values), max_size=6)

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])

path_segments = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", ".", "..", "%2e%2e", "%2F", "A", "KIT", "1", "0", "-1", "9" * 30]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
