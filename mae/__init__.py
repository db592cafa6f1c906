"""Masked-modeling pre-training engine: data -> tokens -> mask -> encode visible -> decode -> target -> loss."""
