"""One module per ``scoreid`` subcommand (see ``scoreid.cli``)."""
