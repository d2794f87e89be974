"""The outside world behind small interfaces: market data, execution, local chains."""
