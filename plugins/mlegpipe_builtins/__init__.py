"""Built-in mlegpipe plugins, registered through entry points like any third-party plugin."""
