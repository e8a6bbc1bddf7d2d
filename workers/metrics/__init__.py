"""Prometheus metrics: declared in families.py, added to by workers (store.py, signals.py), read when scraped
(collector.py) and served by the dashboard's /metrics or `pressroom metrics --port` (exporter.py)."""
