"""The shop's Stepwise tasks: found by Stepwise in every installed app's ``stepwise_tasks`` module."""
from shop.models import Order
from stepwise.tasks.sdk import AbortRun, step, task


@step()
def reserve(order_id):
    order = Order.objects.get(id=order_id)
    return {"item": order.item, "quantity": order.quantity}


@step()
def ship(order_id, carrier):
    Order.objects.filter(id=order_id).update(status="shipped", shipped_by=carrier)
    return {"carrier": carrier}


@task(id="shop-fulfil-order")
def fulfil_order(payload, ctx):
    if not Order.objects.filter(id=payload["order_id"]).exists():
        raise AbortRun(f"no order {payload['order_id']}")
    reserved = reserve(payload["order_id"])  # a checkpoint: a retry does not read it again
    shipped = ship(payload["order_id"], "parcel-express")
    return {**reserved, **shipped}
