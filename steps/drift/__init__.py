"""The scheduled drift check that decides whether to retrain."""
