"""Decision logic: features, labels, models, strategy components and research."""
