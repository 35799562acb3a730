"""Training with an audio lead: the audio excerpt of a pair is centred ``lead`` frames before its
onset, and the network records the lead (its config, hence the exported contract)."""

from __future__ import annotations

import numpy as np
import pytest

from scoreid.models.crossmodal import CrossModalNet
from scoreid.tensors import audio_to_network, audio_window
from trainer.data import PairSet


def test_pairs_cut_the_audio_lead_frames_before_the_onset():
    rng = np.random.default_rng(0)
    spec = rng.random((400, 92), dtype=np.float32)
    ps = PairSet(piece_ids=["p"], specs=[spec], rows=np.array([[0, 100.0, 0, 200.0, 0]]))
    centred = ps.audio_batch(np.array([0]), 84)
    np.testing.assert_array_equal(centred, audio_to_network(audio_window(spec, 200.0, 84)[None]))
    ps.audio_lead = 20
    led = ps.audio_batch(np.array([0]), 84)
    np.testing.assert_array_equal(led, audio_to_network(audio_window(spec, 180.0, 84)[None]))
    # the onset's frame now lies 20 frames after the excerpt's centre
    assert not np.array_equal(centred, led)


def test_the_network_records_its_lead():
    net = CrossModalNet(audio_lead=20)
    assert net.config["audio_lead"] == 20
    assert CrossModalNet.from_config(net.config).audio_lead == 20
    assert "audio_lead" not in CrossModalNet().config  # a model without one keeps its old config
    with pytest.raises(ValueError):
        CrossModalNet(audio_lead=42)


def test_evaluation_cuts_the_pairs_with_the_models_lead():
    from types import SimpleNamespace

    from scoreid import contract as C
    from trainer.common import TorchEmbedder
    from trainer.evaluate import audio_lead_of

    assert audio_lead_of(CrossModalNet(audio_lead=20)) == 20
    # what `trainer/run.py eval RUN` and the pipeline give the evaluation: the run's network, wrapped
    assert audio_lead_of(TorchEmbedder(CrossModalNet(audio_lead=20))) == 20
    assert audio_lead_of(TorchEmbedder(CrossModalNet())) == 0
    assert audio_lead_of(SimpleNamespace(contract=C.with_audio_window(84, 12))) == 12
    assert audio_lead_of(SimpleNamespace()) == 0
