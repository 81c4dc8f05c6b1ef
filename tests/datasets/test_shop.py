"""The shop-orders task of the agent adapter."""

from __future__ import annotations

import pytest

from gepetto.datasets.shop import PRICES, lookup_price, multiply, shop_metric, shop_orders


def test_orders_are_deterministic_and_priced() -> None:
    orders = shop_orders(12, seed=1)
    assert orders == shop_orders(12, seed=1) != shop_orders(12, seed=2)
    for order in orders:
        assert order["answer"] == round(order["quantity"] * PRICES[order["item"]], 2)
        assert str(order["quantity"]) in order["input"]


def test_tools_and_metric() -> None:
    assert lookup_price("peaches") == lookup_price("peach") == 1.15
    assert lookup_price("Melons") == 3.25
    with pytest.raises(KeyError, match="unknown item 'kiwi'"):
        lookup_price("kiwi")
    assert multiply(0.45, 3) == 1.35
    order = {"input": "How much do 3 apples cost?", "answer": 1.35, "item": "apple", "quantity": 3}
    assert shop_metric(order, "It costs $1.35.", {"tool_calls": []})[0] == 1.0
    score, feedback = shop_metric(order, "0.45", {"tool_calls": [{"tool": "lookup_price"}]})
    assert score == 0.0 and "expected 1.35 (3 x 0.45" in feedback
    assert "not multiplied by the quantity (multiply)" in feedback
    assert "not looked up" in shop_metric(order, "2", {"tool_calls": []})[1]
