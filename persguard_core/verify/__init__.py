"""Verification: attack a protected model like an attacker would and judge the outputs (PSR, false trigger)."""
