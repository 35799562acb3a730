"""trainer: corpus building, self-supervised pre-training, fine-tuning, evaluation and export.

May import the core (``scoreid``); never imports a service package. ``trainer/run.py`` is the CLI.
"""
