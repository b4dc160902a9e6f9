"""The built-in base model: its configuration, BPE tokenizer, training and evaluation on the toy world."""
