"""Observers of a run's events: logging, OpenTelemetry, MLflow, Weights & Biases.

Each integration is an ordinary observer (pass it in ``callbacks=[...]``) and imports its
optional package lazily, with a message naming the extra to install.
"""
