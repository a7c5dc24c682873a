"""The demo model's files (data only: see deltamem.demo.build)."""
