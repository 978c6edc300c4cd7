"""Evaluation by slice and the promotion gate."""
