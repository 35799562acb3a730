"""The page's WebSocket protocol as the web tests speak it (``web/session.py``): the control
messages, the page's chunk size, sending a recording and reading the answers or the close."""

from __future__ import annotations

import json

import numpy as np

from scoreid import contract as C

START = json.dumps({"type": "start", "sample_rate": C.SAMPLE_RATE, "format": "f32le"})
END = json.dumps({"type": "end"})
CHUNK = 2205  # 0.1 s, as the page sends


def closed(ws) -> tuple[int, str]:
    """The close code and reason the server sent (messages before it are skipped)."""
    while True:
        m = ws.receive()
        if m["type"] == "websocket.close":
            return m["code"], m.get("reason", "")


def until_final(ws) -> list[dict]:
    """The messages up to and including the ``final`` one."""
    out = []
    while True:
        out.append(ws.receive_json())
        if out[-1]["type"] == "final":
            return out


def stream(ws, audio: np.ndarray) -> list[dict]:
    """Send ``audio`` in page-sized chunks, then end; the updates and the final message."""
    for s in range(0, len(audio), CHUNK):
        ws.send_bytes(audio[s : s + CHUNK].astype("<f4").tobytes())
    ws.send_text(END)
    return until_final(ws)
