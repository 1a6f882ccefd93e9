"""Alerts: a subscription that keeps failing notifies its contact, at most once a day.

    from agents.alerts.policy import DeliveryHealth, is_failing
    from agents.alerts.ledger import AlertLedger
    from agents.alerts.notifiers import SmtpNotifier, WebhookNotifier
    from agents.alerts.alerter import Alerter

    ledger = await AlertLedger.open(bootstrap, app_id)        # durable: `<app id>-alerts`, compacted
    alerter = Alerter(ledger, SmtpNotifier("smtp.kommune.no", 25, "samband@kommune.no"))
    await alerter.check("bergen-helsestasjon", "drift@bergen.kommune.no",
                        DeliveryHealth(consecutive_failures=7, oldest_pending_age_seconds=5400, last_reason="http.503"))

The delivery stage calls `check` after each failed attempt (or on a timer) for the subscriptions
it handles; `check` decides (policy.is_failing), looks at when this subscription's contact was
last told (the ledger), notifies, and records the sending.
"""
