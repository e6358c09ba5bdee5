"""Distill component: teacher to a smaller student, optional int8, retention gate."""
