"""bof: the Bag of Freebies for training object detectors (Zhang et al., 2019), reproduced."""

__version__ = "0.1.0"
