"""The command line: argument parsing, one module per command, the REPL, the CLI's wording."""
