from reflexio_mcp.cli import main

main()
