"""Research tools on the same feature and model code as the daemon."""
