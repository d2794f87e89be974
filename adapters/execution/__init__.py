"""Executors: they turn `OrderRequest` events into fills (on paper or on a DEX)."""
