"""The page a musician opens (``scoreid web``): one page that listens, names the piece and turns it.

- :mod:`web.limits` — the session limits (the streaming services' own, from ``ops.config``) and the
  WebSocket close codes;
- :mod:`web.session` — one browser's stream: the protocol (JSON control frames and PCM frames in,
  the engine's updates out) and the one ``Session`` interface of its two backends:
- :mod:`web.offline_session` — the same :class:`scoreid.identify.stream.Identifier` as
  ``scoreid identify``, one per session, in this process;
- :mod:`web.stack_session` — one ``Identify.Stream`` call per session to a running stack
  (``scoreid web --stack``, ``scoreid up --web``), :mod:`web.stack_target` saying which stack and
  with what credentials and library;
- :mod:`web.pages` — the library's page images as the engine's coordinates see them (deskewed);
- :mod:`web.app` — the Starlette application: the page, its static files, the library's pieces and
  pages, and the ``/ws`` WebSocket;
- ``web/static/`` — the page itself (HTML, CSS, the page's script and its AudioWorklet).
"""
