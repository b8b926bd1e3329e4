"""The package version, in a module of its own: modules inside gradflow read it from here, so
none of them imports the package root while the root is still being initialized."""

__version__ = "0.1.0"
