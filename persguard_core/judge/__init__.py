"""The judges: the toy-world classifier and the pattern detector the verification scores outputs with."""
