"""The ``scoreid`` command line (``cli.main``; one module per subcommand in ``cli.commands``) and
the Python client of the streaming API (``cli.client``). Imports the core, ``ops``, ``synthesis``
and ``proto``; nothing imports it but the trainer's dispatcher (``cli.dispatch``) and the benches."""
