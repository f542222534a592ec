"""Shared by every test folder: this folder on `sys.path` (for `clihelpers`), and no registry from the environment."""
