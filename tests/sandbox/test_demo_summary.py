"""The demo's closing table of the store: printed per channel and status, and read back."""

from __future__ import annotations

from sandbox.demo_summary import StoreCounts, parse_store_text


def test_the_store_table_reads_back_as_printed() -> None:
    counts = StoreCounts(
        by_status={
            "shopify": {"open": 3, "shipped": 24, "cancelled": 6},
            "amazon": {"pending": 1, "open": 2, "partially_shipped": 1, "shipped": 26},
        },
        oversold={"shopify": 3, "ebay": 1},
        dead_jobs=2,
    )
    printed = "some line before\n" + counts.text() + "\nsome line after\n"
    table = parse_store_text(printed)
    assert table == {
        "amazon": {
            "orders": 30,
            "pending": 1,
            "open": 2,
            "partially_shipped": 1,
            "shipped": 26,
            "cancelled": 0,
            "oversold": 0,
        },
        "ebay": {
            "orders": 0,
            "pending": 0,
            "open": 0,
            "partially_shipped": 0,
            "shipped": 0,
            "cancelled": 0,
            "oversold": 1,
        },
        "shopify": {
            "orders": 33,
            "pending": 0,
            "open": 3,
            "partially_shipped": 0,
            "shipped": 24,
            "cancelled": 6,
            "oversold": 3,
        },
    }
    assert "2 dead job(s)" in printed
