"""Real-performance validation (never training): ASAP's Mozart and Haydn works in ``../shared/real-dev``.

- :mod:`trainer.realdev.works` finds the work folders (score, real performances as MIDI, beats).
- :mod:`trainer.realdev.matches` finds, by their notes, which corpus pieces are the same works
  (``corpus_matches.json``: these must stay out of training).
- :mod:`trainer.realdev.build` builds the validation set: scores engraved in Leland and degraded like
  scans (page images only), performances synthesised with the held-out csound soundfont, a room and
  noise.
- :mod:`trainer.realdev.excerpts` draws the seeded excerpt offsets ``bench/realdev.py`` streams.

The MuseScore engraver and the MuseScore General soundfont stay reserved for the separate
evaluation and are used nowhere here.
"""
