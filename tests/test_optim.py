"""The shared optimizer: fused where torch has the kernel, and the same steps as the per-tensor AdamW."""

import torch

from autotradeoff.models.optim import adamw


def _trained(make_optimizer) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 2))
    optimizer = make_optimizer(model.parameters())
    inputs, labels = torch.randn(64, 16), torch.randint(0, 2, (64,))
    for _ in range(5):
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_on_cpu_takes_the_per_tensor_adamw_steps():
    assert adamw(torch.nn.Linear(2, 2).parameters(), "cpu", lr=1e-3, weight_decay=0.0).defaults["fused"]
    fused = _trained(lambda params: adamw(params, "cpu", lr=1e-2, weight_decay=0.01))
    loop = _trained(lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01, foreach=False))
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_devices_without_a_fused_kernel_get_the_default_adamw():
    assert not adamw(torch.nn.Linear(2, 2).parameters(), "mps", lr=1e-3, weight_decay=0.0).defaults["fused"]
