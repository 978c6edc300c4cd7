"""Distributed XGBoost training: the tracker, the workers and the check after them."""
