"""Training: `trainer.train(cfg, data, out)`, one process or torchrun/DDP; `gazeclip train` (`cli`)."""
