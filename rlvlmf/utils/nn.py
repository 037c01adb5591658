"""The plain MLP that the SAC networks and the reward nets are built from.

Here, not in ``agents`` or ``reward``, so neither package imports the other.
"""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim``: Linear layers with ``activation`` between, a linear last layer.

    Args:
        in_dim: Input features.
        hidden: Widths of the hidden layers (may be empty: one Linear layer).
        out_dim: Output features.
        activation: Module class put after every hidden Linear layer (SAC: ReLU; reward nets: LeakyReLU).

    Returns:
        The network; its parameter names (``0.weight``, ``2.weight``, ...) follow the layer order.
    """
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
