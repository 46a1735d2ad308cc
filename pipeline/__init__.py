"""facepipe: self-hosted face recognition as an asynchronous batch pipeline."""

__version__ = "0.1.0"
