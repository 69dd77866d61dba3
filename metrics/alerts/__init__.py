"""Alerting: rules over the stored data, their per-entity states, silences and delivery
(docs/alerts.md). Flat modules: models, catalogue (what a rule can watch, as SQL), silences,
evaluate (states), deliver (grouping, payloads, the notification queue), api, admin."""
