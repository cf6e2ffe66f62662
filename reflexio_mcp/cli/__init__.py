"""The `reflexio-mcp` command: one module per subcommand, `main` the dispatcher."""
