"""approval-workflow: fetch a document, ask a reviewer, wait up to 7 days for the answer."""
from __future__ import annotations

from examples.fakes import fingerprint, pause
from stepwise.tasks.sdk import step, task, wait


@step()
def fetch_document(document_id: str) -> dict:
    pause(0.2)
    return {"id": document_id, "title": f"Document {document_id}", "reviewerId": "reviewer-1"}


@step()
def send_approval_email(reviewer_id: str, document_id: str) -> dict:
    pause(0.2)
    return {"sent_to": reviewer_id, "message_id": f"msg_{fingerprint(reviewer_id, document_id)}"}


@step()
def publish_document(document_id: str) -> dict:
    pause(0.3)
    return {"published": document_id, "url": f"https://docs.example.com/{document_id}"}


@task(id="approval-workflow")
def approval_workflow(payload, ctx):
    doc = fetch_document(payload["documentId"])
    send_approval_email(doc["reviewerId"], doc["id"])
    approval = wait.for_event("approval", timeout="7d", filter={"documentId": payload["documentId"]})
    approved = bool(approval.ok and approval.output.get("approved"))
    if approved:
        publish_document(doc["id"])
    return {"approved": approved, "timedOut": approval.timed_out}


@task(id="refund-approval")
def refund_approval(payload, ctx):
    """A human approves or rejects in the console (or the CLI) through a waitpoint token."""
    amount, customer = payload.get("amount", 0), payload.get("customer", "customer")
    decision = wait.for_token(timeout="2d", description=f"Refund {amount} EUR to {customer}")
    if not decision.ok:
        return {"refunded": False, "reason": "no decision within 2 days"}
    return {"refunded": decision.output["approved"], "note": decision.output.get("note", "")}
