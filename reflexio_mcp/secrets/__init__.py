"""The secret scanner: finds secrets in text and replaces them with markers. A leaf: it
imports nothing of reflexio-mcp."""
