"""The data both applications share while the service moves: orders and customers in memory.

(In a real service this is the database both code bases talk to.)
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

LOCK = threading.Lock()
CUSTOMERS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "name": "Ada"},
    2: {"id": 2, "name": "Grace"},
}
ORDERS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "customer": 1, "item": "kettle", "status": "open"},
}
_IDS = itertools.count(2)


def add_order(customer: int, item: str) -> dict[str, Any]:
    with LOCK:
        order = {"id": next(_IDS), "customer": customer, "item": item, "status": "open"}
        ORDERS[order["id"]] = order
        return dict(order)


def cancel_order(order_id: int, reason: str) -> dict[str, Any] | None:
    with LOCK:
        order = ORDERS.get(order_id)
        if order is None:
            return None
        order.update(status="cancelled", reason=reason)
        return dict(order)
