"""process-order: load an order, charge it, ship it; the carrier fails now and then."""
from __future__ import annotations

from examples.fakes import fingerprint, flaky, pause
from stepwise.tasks.sdk import AbortRun, Retry, step, task


@step()
def load_order(order_id: str) -> dict:
    pause(0.2)
    if not order_id:
        raise AbortRun("orderId is required")
    return {"id": order_id, "total": 4200, "currency": "EUR", "items": ["book", "lamp"]}


@step()
def charge(order: dict) -> dict:
    pause(0.4)
    return {"charge_id": f"ch_{fingerprint('charge', order['id'])}", "amount": order["total"]}


@step()
def ship(order: dict) -> dict:
    pause(0.3)
    flaky("carrier API")
    return {"tracking": f"TRK{fingerprint('ship', order['id']).upper()}"}


def alert_on_failure(payload, error, ctx) -> None:
    """on_failure: runs once when the order has failed for good (not on each retry)."""
    ctx.logger.error(f"order {payload.get('orderId')!r} failed for good: {error['message']}", alert="orders")


@task(id="process-order", retry=Retry(max_attempts=3, factor=2, min_timeout=1, max_timeout=10),
      on_failure=alert_on_failure)
def process_order(payload, ctx):
    order = load_order(payload.get("orderId", ""))
    receipt = charge(order)
    shipment = ship(order)
    return {"status": "completed", "orderId": order["id"], **receipt, **shipment}
