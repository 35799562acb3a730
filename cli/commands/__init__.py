"""One module per ``scoreid`` subcommand (see ``cli.main``)."""
