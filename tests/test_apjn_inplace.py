"""cs.apjn on a model with BatchNorm in training mode and an in-place residual add (as Hugging
Face's ResNet writes it): its running statistics are not updated by the measurement (an update
is an in-place write torch.func refuses), and the in-place model measures as its out-of-place
twin."""

import torch
from torch import nn

import critsym as cs


class _Block(nn.Module):
    def __init__(self, width: int, in_place: bool):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.norm = nn.BatchNorm1d(width)
        self.act = nn.ReLU()
        self.in_place = in_place

    def forward(self, x):
        h = self.norm(self.lin(x))
        if self.in_place:
            h += x
        else:
            h = h + x
        return self.act(h)


def _pair(width: int = 16):
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(width, width), _Block(width, True), _Block(width, True))
    b = nn.Sequential(nn.Linear(width, width), _Block(width, False), _Block(width, False))
    b.load_state_dict(a.state_dict())
    return a.double().train(), b.double().train()


def test_in_place_model_measured_as_its_out_of_place_twin():
    inplace, plain = _pair()
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    layers = ["0", "1", "2"]
    a = cs.apjn(inplace, x, layers, n_probes=6, batch_axis=None, seed=4)
    b = cs.apjn(plain, x, layers, n_probes=6, batch_axis=None, seed=4)
    torch.testing.assert_close(torch.as_tensor(a.J), torch.as_tensor(b.J), rtol=1e-12, atol=0)
    assert a.J[-1] > 0


def test_measurement_leaves_running_statistics_alone():
    model, _ = _pair()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cs.apjn(model, x, ["0", "2"], n_probes=2, batch_axis=None)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(m.track_running_stats for m in model.modules()
               if isinstance(m, nn.BatchNorm1d))
