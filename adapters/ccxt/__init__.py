"""Centralised exchanges through ccxt: client with retry, live bar feed, history fetch."""
