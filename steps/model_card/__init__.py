"""The model card: what a reviewer needs before approving a model, published with it."""
