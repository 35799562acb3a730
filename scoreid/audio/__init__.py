"""Audio input and the spectrogram front end of the feature contract."""
