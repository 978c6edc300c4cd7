"""The tabular data every step reads: the dataset, its features, the reference profile and
the synthetic sample."""
