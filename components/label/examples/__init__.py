"""Example labelling functions."""
