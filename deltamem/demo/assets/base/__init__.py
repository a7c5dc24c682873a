"""The demo backbone: a transformers model folder (data only: see deltamem.demo.build)."""
