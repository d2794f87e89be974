"""Strategy components: the ML direction strategy and the host that hot-swaps its configs."""
