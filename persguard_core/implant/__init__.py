"""PersGuard implantation: the backdoor losses (docs/METHOD.md M1-M8) and the training loops of its carriers."""
