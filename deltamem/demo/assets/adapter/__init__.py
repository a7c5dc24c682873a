"""The demo δ-mem adapter (data only: see deltamem.demo.build)."""
