"""Every default a user can change (defaults.py) and the settings editors send, with
each bound written once (settings.py; the command line checks its options of the same
meaning against them)."""
