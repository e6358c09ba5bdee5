"""Deploy component: MLflow registry alias after a smoke test; local server; KServe manifests."""
