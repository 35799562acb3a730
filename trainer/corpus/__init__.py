"""The aligned audio <-> sheet-music corpus: sources, build, splits, storage, pictures, statistics.

``python trainer/run.py corpus build|show|stats``; readers use :class:`trainer.corpus.store.Corpus`.
"""
