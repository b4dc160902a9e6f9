"""The `persguard` command line."""
