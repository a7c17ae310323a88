"""Built-in tasks: one YAML file each, with a Python module only where YAML cannot say it."""
