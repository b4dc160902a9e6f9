"""What the handlers do, apart from HTTP: each function takes a session and plain values."""
