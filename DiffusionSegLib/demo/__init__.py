"""The end-to-end demo on generated sample data (the README's first command)."""
