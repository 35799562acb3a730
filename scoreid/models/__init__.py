"""Model definitions shared by the trainer and the serving backends (encoders, heads, CCA)."""
