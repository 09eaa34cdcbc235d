"""One module per command: NAME, HELP, add_arguments(parser), main(args) -> exit code."""
