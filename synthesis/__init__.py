"""Training-data synthesis: engraving scores (Verovio), expressive performances, audio
rendering, and the demo's pieces. Used by the trainer and by ``scoreid demo``; serving never
imports it. Imports the core (``scoreid``) only."""
