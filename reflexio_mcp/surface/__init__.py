"""The MCP surface: tools, resources, prompts and completions, and the middleware around
them. Talks to the Backend protocol only, never to a concrete backend or to Settings."""
