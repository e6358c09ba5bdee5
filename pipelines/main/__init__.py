"""The main pipeline: ingest, label, train, distill, deploy."""
