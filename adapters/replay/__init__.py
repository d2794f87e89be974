"""Candle-file replay and the bundled real-data samples."""
