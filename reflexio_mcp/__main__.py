from reflexio_mcp.cli.main import main

main()
