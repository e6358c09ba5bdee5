"""Ingest component: read, validate, clean, split and fingerprint a dataset."""
