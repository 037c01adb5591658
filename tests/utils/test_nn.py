"""The one MLP builder behind SAC's actor and the reward nets' heads."""

from __future__ import annotations

from torch import nn

from rlvlmf.agents.sac import SAC, SACConfig
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.nets import RewardNet
from rlvlmf.utils.nn import mlp


def test_mlp_alternates_linear_and_activation_with_a_linear_last_layer() -> None:
    net = mlp(5, (8, 4), 2)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(5, 8), (8, 4), (4, 2)]
    # Parameter names are what saved agents and reward models hold.
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert [type(m) for m in mlp(3, (), 1)] == [nn.Linear]
    assert isinstance(mlp(3, (6,), 1, activation=nn.LeakyReLU)[1], nn.LeakyReLU)


def test_sac_and_reward_nets_build_their_mlps_with_it() -> None:
    actor = SAC(5, 2, SACConfig(hidden_sizes=(16, 16), batch_size=8)).actor
    assert str(actor) == str(mlp(5, (16, 16), 4))
    head = RewardNet(RewardModelConfig(input="state", state_dim=6)).head
    assert isinstance(head[1], nn.LeakyReLU) and isinstance(head[-1], nn.Linear) and head[-1].out_features == 1
