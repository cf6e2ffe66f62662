"""Memory without asking: transcripts and files read into publishes (`import`), and the
Claude Code hooks that capture a session's turns and bring back what is known at its start."""
