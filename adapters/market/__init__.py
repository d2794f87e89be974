"""Market-data adapters: they publish `Bar` events on the bus."""
