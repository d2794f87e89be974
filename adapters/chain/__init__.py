"""Local chains for tests and the demo: anvil and the real Uniswap V2 contracts."""
