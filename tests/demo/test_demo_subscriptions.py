"""The demo's sample subscriptions (deploy/demo/subscriptions) load through the subscription model."""

from __future__ import annotations

from agents.demo.systems import load_subscriptions


def _subscriptions():
    return {s.id: s for s in load_subscriptions()}  # raises on any invalid file


def test_every_sample_system_is_a_valid_subscription():
    subs = _subscriptions()
    assert set(subs) == {
        "bergen-helsestasjon",
        "oslo-barnehage",
        "tromso-skole",
        "trondheim-pleie-og-omsorg",
        "alta-bibliotek",
        "eventyrhagen-barnehager",
        "barnevern-nasjonal",
        "stavanger-gebyr",
        "oslo-hjemmetjeneste",
    }
    assert subs["tromso-skole"].kommuner == ["5501"]
    assert all("folkeregisterloven § 10-2" in s.legal_basis for s in subs.values())


def test_the_sample_covers_a_private_operator_a_national_system_and_every_delivery_kind():
    subs = _subscriptions()
    private = [s for s in subs.values() if not s.public_body]
    assert [s.id for s in private] == ["eventyrhagen-barnehager"]
    barnevern = subs["barnevern-nasjonal"]
    assert barnevern.kommuner == "all" and "envelope.addressProtection" in barnevern.fields["Move"]
    assert [s.id for s in subs.values() if s.delivery.kind == "kafka"] == ["stavanger-gebyr"]
    assert [s.id for s in subs.values() if s.delivery.kind == "files"] == ["alta-bibliotek"]
    assert [s.id for s in subs.values() if s.delivery.kind == "pull"] == ["oslo-hjemmetjeneste"]
