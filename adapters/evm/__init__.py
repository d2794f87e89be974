"""EVM chains: JSON-RPC, keys, nonces, fees, receipts, sending, reverts, anvil."""
