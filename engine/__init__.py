"""The runtime core: event bus, clock, components, config, daemon. Knows nothing of
TA-Lib, AutoGluon or web3; adapters and strategies plug in through the bus."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trade-engine")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
