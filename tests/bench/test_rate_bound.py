"""The end-to-end bench's floor for oversells: a tool with no delay of its own, bound only by
Amazon's published patch rate (bench/e2e_trace.py::simulate_rate_bound)."""

from __future__ import annotations

from bench.e2e_trace import TraceOrder, simulate_rate_bound


def _sell_out_elsewhere_then_on_amazon(listings: int, gap_s: float) -> list[TraceOrder]:
    """Each of `listings` single-unit SKUs sold on Shopify at t=0, then on Amazon `gap_s` later."""
    shopify = [TraceOrder(i, "shopify", ((i, 1),), 0.0) for i in range(listings)]
    amazon = [TraceOrder(listings + i, "amazon", ((i, 1),), gap_s) for i in range(listings)]
    return shopify + amazon


def test_amazon_is_corrected_as_fast_as_its_bucket_allows_and_no_faster() -> None:
    # Six listings sold out at once, a bucket of 5 a second holding 5: five are patched at
    # once, the sixth 0.2 s later. An Amazon buyer 0.1 s later gets only the sixth's unit.
    trace = _sell_out_elsewhere_then_on_amazon(6, gap_s=0.1)
    bound = simulate_rate_bound(trace, [1] * 6, rate=1.0, patch_rate=5.0, patch_burst=5.0)
    assert (bound.accepted, bound.refused) == (7, 5)
    assert (bound.oversold_orders, bound.oversold_units) == (1, 1)
    # 0.3 s later every listing has been patched: nothing oversold.
    trace = _sell_out_elsewhere_then_on_amazon(6, gap_s=0.3)
    bound = simulate_rate_bound(trace, [1] * 6, rate=1.0, patch_rate=5.0, patch_burst=5.0)
    assert (bound.oversold_orders, bound.patches) == (0, 6)


def test_a_listing_sold_out_gets_the_next_patch_before_an_older_change() -> None:
    # The one token goes on SKU 2 (sold out at t=0); then SKU 0 drops from 5 to 4 and SKU 1
    # from 1 to 0. The next token (t=1) goes to SKU 1, sold out, though SKU 0 changed first:
    # the Amazon buyer of SKU 1 at t=1.5 is refused.
    trace = [
        TraceOrder(0, "ebay", ((2, 1),), 0.0),
        TraceOrder(1, "ebay", ((0, 1),), 0.1),
        TraceOrder(2, "ebay", ((1, 1),), 0.2),
        TraceOrder(3, "amazon", ((1, 1),), 1.5),
    ]
    bound = simulate_rate_bound(trace, [5, 1, 1], rate=1.0, patch_rate=1.0, patch_burst=1.0)
    assert (bound.accepted, bound.refused, bound.oversold_orders) == (3, 1, 0)
    assert bound.patches == 2
