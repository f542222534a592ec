"""Layer 6: the `mbpo` command line, one module per command, calling the layers below."""
