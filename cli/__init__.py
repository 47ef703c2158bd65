"""The `vigil` command line: one dispatcher, one module per subcommand."""
