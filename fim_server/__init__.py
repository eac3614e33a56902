"""fim-server: a code-completion language server backed by a block-diffusion FIM model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fim-server")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
