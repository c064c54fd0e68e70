"""Built-in mlegpipe plugins."""
