"""Modal screens of ckpt-tui: help, candidates, rules, save, write, quit."""
