"""The sweep files that ship with the harness, run by name: `harness sweep toy` is sweeps/toy.yaml."""
