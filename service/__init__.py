"""detainer-watch: a news monitor for US immigration detainers and sanctuary policy."""

__version__ = "0.1.0"
