"""Models: features, labels, leakage check, training, registry, serving, monitoring."""
