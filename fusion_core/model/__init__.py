"""The multi-exit fusion detector: stems onto one BEV grid, fusion experts, a head with exits."""
