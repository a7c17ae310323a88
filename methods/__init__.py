"""Built-in method adapters: one module each; a module `methods/<name>.py` registers the method `<name>`."""
