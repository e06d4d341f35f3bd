"""The mlx-mesh engine: one peer's share of a model in MLX, driven over length-prefixed CBOR frames."""

PROTOCOL = 2
