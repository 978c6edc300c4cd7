"""Provenance: the content-addressed dataset and the chain of statements behind a model."""
