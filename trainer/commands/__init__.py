"""One module per ``trainer/run.py`` subcommand (same shape as ``cli.commands``)."""
