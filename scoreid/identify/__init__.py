"""Identification: vote tallies over audio windows, decay, and score following (the core path
that ``scoreid identify`` runs offline and the services run online)."""
