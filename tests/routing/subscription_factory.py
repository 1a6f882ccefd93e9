"""Subscriptions for the routing tests (all synthetic systems)."""

from __future__ import annotations

from agents.subscriptions.model import Subscription


def subscription(
    sub_id: str,
    kommuner,
    event_types: list[str],
    fields: dict[str, list[str]],
    *,
    public_body: bool = True,
    predicates: dict | None = None,
) -> Subscription:
    return Subscription.model_validate(
        {
            "id": sub_id,
            "system": {"name": f"System {sub_id}", "owner": "Prøve kommune", "contact": "it@prove.example"},
            "legal_basis": "Testhjemmel § 1 (synthetic test subscription)",
            "public_body": public_body,
            "kommuner": kommuner,
            "event_types": event_types,
            "predicates": predicates or {},
            "fields": fields,
            "delivery": {"kind": "kafka"},
        }
    )
