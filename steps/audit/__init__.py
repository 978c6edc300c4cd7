"""The audit gate: is this data fit to train on?"""
