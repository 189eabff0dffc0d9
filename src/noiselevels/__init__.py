"""noiselevels: the noise levels of diffusion and flow-matching models, in logSNR."""
__version__ = "0.1.0"
