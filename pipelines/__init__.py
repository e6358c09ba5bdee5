"""Pipelines that wire the components into KFP DAGs."""
