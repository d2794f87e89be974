"""The prediction HTTP API: POST /predict on a registered model."""
