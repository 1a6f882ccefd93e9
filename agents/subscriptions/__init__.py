"""Subscriptions: who receives which life events, with which fields, under which legal basis."""
