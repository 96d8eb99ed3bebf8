"""alert-broker: pluggable classifier filters over ZTF and Rubin/LSST alert streams."""
__version__ = "0.1.0"
