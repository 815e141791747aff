"""The service as it was: a Flask (WSGI) application with every route.

Served unchanged; the routes the new application has taken over are no longer reached at the root,
but the whole app is still mounted under /legacy for the old clients.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, jsonify, request, url_for

from examples.migration import store

app = Flask("legacy")


@app.after_request
def served_by(response: Response) -> Response:
    response.headers["X-Served-By"] = "legacy-flask"
    return response


@app.get("/orders")
def list_orders() -> Any:
    with store.LOCK:
        return jsonify(sorted(store.ORDERS.values(), key=lambda o: o["id"]))


@app.post("/orders")
def create_order() -> Any:
    data = request.get_json(force=True)
    order = store.add_order(int(data["customer"]), str(data["item"]))
    return jsonify(order), 201, {"Location": url_for("get_order", order_id=order["id"])}


@app.get("/orders/<int:order_id>")
def get_order(order_id: int) -> Any:
    with store.LOCK:
        order = store.ORDERS.get(order_id)
    if order is None:
        abort(404)
    return jsonify(order)


@app.post("/orders/<int:order_id>/cancel")
def cancel(order_id: int) -> Any:
    reason = request.get_json(force=True).get("reason", "")
    order = store.cancel_order(order_id, reason)
    if order is None:
        abort(404)
    return jsonify(order)


@app.get("/customers/<int:customer_id>")
def get_customer(customer_id: int) -> Any:
    customer = store.CUSTOMERS.get(customer_id)
    if customer is None:
        abort(404)
    return jsonify(customer)


@app.get("/reports/daily")
def daily_report() -> Any:
    with store.LOCK:
        statuses = [o["status"] for o in store.ORDERS.values()]
    return jsonify(open=statuses.count("open"), cancelled=statuses.count("cancelled"))


@app.get("/whoami")
def whoami() -> Any:
    """Where this app thinks it is: WSGI's SCRIPT_NAME and PATH_INFO, and a URL it builds."""
    return jsonify(
        app="legacy-flask",
        script_name=request.environ["SCRIPT_NAME"],
        path_info=request.environ["PATH_INFO"],
        url=url_for("whoami"),
    )
