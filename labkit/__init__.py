"""labkit: a small internet of mail on loopback, for learning how e-mail works."""

__version__ = "0.1.0"
