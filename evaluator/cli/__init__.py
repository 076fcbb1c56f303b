"""The ``edl`` command line (``main``): one module per group of commands, options built from the config."""
