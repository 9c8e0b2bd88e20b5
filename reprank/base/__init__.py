"""The foundation: user errors, safe file writes, and the one home of every default."""
