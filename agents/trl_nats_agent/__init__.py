"""trl-nats node agent: claims DPO/SFT jobs from NATS and runs them under torchrun."""

__version__ = "0.1.0"
